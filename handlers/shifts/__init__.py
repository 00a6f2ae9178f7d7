"""Shifts over several locations: the follow-the-sun handover a group posts to the next at the end of each
of its shifts (``handover``: what is open, what falls due on the next shift, the changes coming and the
breach notices nobody acknowledged, with a *Take over* button), and the workload of each team (``team``).

When a group is on shift, and whose skills match a service, is worked out in handlers/core/on_shift.py,
below the capabilities, so that a new ticket (in the sla layer) can suggest people on shift.
"""

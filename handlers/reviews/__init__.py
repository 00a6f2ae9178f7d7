"""Post-incident reviews: when a P1 or P2 (``reviews.priorities``) is resolved, a review opens with an owner
(the service's owner) and a due date (``reviews.due_days`` by priority), and the owner is asked by direct
message. ``review new INC-N`` opens one for any ticket.

A review holds a timeline assembled from what svcbot already knows — the ticket's events, its service's
status changes, the breach and warning notices of its clocks, the service's outages and the changes on it in
the 72 hours before the ticket opened — with the notes people add to it (``review note``); the impact measured
from the clocks and outages (business time lost on the service's calendar, agreements breached); what
happened, the impact in words and the contributing factors as written (each part keeps who wrote it: that is
governance, kept on erasure); and follow-up actions, which are items of the CSI register.

- ``record``: the review itself, who may run it, the sweep that opens reviews, and what is overdue.
- ``timeline``: the timeline and the impact, in a few queries whatever the ticket's length.
- ``commands``: ``review …`` and the edit form (a Slack modal, a Teams card).
- ``export``: the review as Markdown (a Jinja2 template), for a wiki or a git repository.

Opening on resolution is a sweep (registered by the server, every ``delivery.sweep_seconds``) and also runs
right after an ``incident`` command in chat, since the tickets' capability sits below this one and cannot
call it. The review's unique ticket makes it once across sweeps and replicas. Only tickets raised in chat or
through the API and resolved within ``reviews.lookback_days`` are reviewed unasked: an import of history
opens none.
"""

"""Each person's home and work started from a chat message.

view.py: ``home``, what one person should look at (their services, votes, changes, their team's incidents
and breach notices, surveys, CSI items; a service manager's month at a glance), the same Reply in every
front end. published.py: the Slack App Home tab, published to those who opened it and again, debounced,
when what it shows changes. shortcuts.py: an incident or a change raised from a message (Slack
shortcuts, Teams message actions), its link kept and the new record announced in the message's thread.
references.py: INC-N, CHG-N and SRV-N written in a channel that asks for it answered with a summary.
"""

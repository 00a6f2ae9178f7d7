"""Pulse surveys and after-ticket surveys: asking, answering, results, reminders, and the retention purge.

A pulse survey goes to a channel (posted with rating buttons) or to people and groups (by direct
message). Each person answers once and may change the answer until the survey closes. An anonymous
answer is stored with a keyed hash of the survey and the person, never the person; the hash is only
there to keep one answer per person, and it is cleared when the survey closes. Anonymous results stay
hidden until ``surveys.min_respondents`` people have answered.

After-ticket surveys follow each service's ``ticket_survey`` settings: a resolved ticket's requester
is asked one CSAT question by direct message, once, after a delay; a sampled share of tickets only.
The answers are the service's satisfaction and count against a satisfaction target in its agreement.
"""

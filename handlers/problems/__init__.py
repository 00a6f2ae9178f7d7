"""Problems and known errors: the one cause behind repeated incidents.

- ``record``: the problem (PRB-N): its services, owner, incidents and state ``open → known-error → resolved``;
  who may run it (the owners of its services, its own owner, service managers); linking an incident (one
  problem per incident), with the recurrence rule — an incident opened within 30 days after the fix reopens a
  resolved problem (to ``known-error`` when it has a workaround, else ``open``) and tells its owner — and its
  impact: the incidents' time open on each service's business calendar, summed, and their breaches.
- ``known_errors``: a known error's workaround, published as a ``known-error`` article of the knowledge
  library (created, then revised), with the problem's incidents linked to it so the library counts them; and
  the workaround announced once on each open incident linked to it (its service's channel, its opener).
- ``commands``: the ``problem`` word: new, list, show, link, unlink, known-error, fix, suggest.
- ``suggestions``: three or more unlinked incidents of one service within seven days whose titles match each
  other in the store's own full-text engine (FTS5 on SQLite, tsvector on PostgreSQL, as the library's search)
  are suggested to the service's owner once, by a sweep or ``problem suggest``.
- ``imported``: a ServiceNow import links its incidents to problems (made from the export's ``problem_id``),
  batch by batch in the import's own transactions, idempotently.

Every state change is audited in its transaction; every message goes through the outbox.
"""

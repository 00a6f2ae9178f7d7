"""Suppliers: the commercial side of the multi-sourced team — each supplier's scorecard, the service credits
its underpinning contracts owe, and the cost of each service line.

- **Scorecard** (``scorecard``): per supplier and month, each target of its UCs agreed against achieved (the
  UC clocks svcbot measures, through ``sla.attainment``), the breaches with their tickets, the time tickets
  waited on it (``waiting``: the UC clock's own rule, in clock time), the tickets still waiting at the month's
  end (or now, for this month so far) and for how long, the trend of six months, and the satisfaction of the
  tickets it touched (after-ticket answers given in the month about tickets that ever waited on it).
- **Service credits** (``credits``): a UC's ``commercial`` terms in app.yaml — a monthly charge in an ISO 4217
  currency, rules (``percent_per_point`` of the charge per point of attainment below goal; ``per_breach``, an
  amount per breached clock of a target) and a ``cap`` — give the month's credits, in ``Decimal``, each rule
  rounded half up to the currency's minor unit. A service manager marks a month's credits claimed or
  waived with a note (``supplier claim|waive``): one decision per contract and month, audited; the same
  decision again changes nothing.
- **Economics** (``cost``): a service's monthly ``cost`` by line, per ticket resolved and per hour of agreed
  service time (its calendar's business hours in the month), beside its SLA attainment.

The monthly report (``reporting``) shows the credits due and the economics; ``svcbot supplier-pack`` writes
the scorecard as HTML and PDF for the supplier review meeting; ``GET /api/v1/suppliers/{id}/scorecard``
serves it as data. A month is named as the report names it (``handlers/core/months.py``); the default is the
last full month.
"""

"""Service levels: tickets and their clocks, warnings and breaches, availability and outages
(with Alertmanager's webhook), and the ``sla`` command's attainment.
"""

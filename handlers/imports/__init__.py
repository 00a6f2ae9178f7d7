"""Importing other tools' history: ServiceNow incident logs and Rabobank's ITIL changes, and the CSV pieces
they share."""

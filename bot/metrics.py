"""Prometheus metrics, on a registry of their own so that several servers can live in one process."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func, select

from storage.models import OutboxMessage


class Metrics:
    def __init__(self, sessions=None):
        self.registry = CollectorRegistry()
        self.commands = Counter("svcbot_commands_total", "Commands handled", ["platform", "command", "outcome"],
                                registry=self.registry)
        self.latency = Histogram("svcbot_command_seconds", "Time to answer a command", ["platform"],
                                 registry=self.registry)
        self.outbox = Counter("svcbot_outbox_attempts_total", "Outbox delivery attempts by outcome",
                              ["platform", "outcome"], registry=self.registry)
        self.requests_refused = Counter("svcbot_requests_refused_total", "Inbound requests refused",
                                        ["platform", "reason"], registry=self.registry)
        self.backlog = Gauge("svcbot_outbox_backlog", "Outbox rows waiting, by status", ["status"],
                             registry=self.registry)
        self._sessions = sessions

    def count_attempt(self, platform: str, outcome: str) -> None:
        self.outbox.labels(platform=platform, outcome=outcome).inc()

    def refresh(self) -> None:
        """Read the outbox backlog at scrape time."""
        if self._sessions is None:
            return
        with self._sessions() as s:
            counts = dict(s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
        for status in ("pending", "sending", "failed"):
            self.backlog.labels(status=status).set(counts.get(status, 0))

"""Prometheus metrics, on a registry of their own so that several servers can live in one process."""
from __future__ import annotations

from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func, select

from storage.models import OutboxMessage, SlaClock


class Metrics:
    def __init__(self, sessions=None, now=lambda: datetime.now(timezone.utc)):
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
        # The breach sweep falling behind (a sweeper starved of CPU, or stopped): warnings and breaches late.
        self.checks_due = Gauge("svcbot_clock_checks_due", "Clocks whose warning or breach check is due",
                                registry=self.registry)
        self.checks_late = Gauge("svcbot_clock_checks_late_seconds",
                                 "How long the oldest due warning or breach check has waited for the sweep",
                                 registry=self.registry)
        self._sessions, self._now = sessions, now

    def count_attempt(self, platform: str, outcome: str) -> None:
        self.outbox.labels(platform=platform, outcome=outcome).inc()

    def refresh(self) -> None:
        """Read the outbox backlog and the clock checks due at scrape time."""
        if self._sessions is None:
            return
        now = self._now()
        with self._sessions() as s:
            counts = dict(s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
            due, oldest = s.execute(select(func.count(), func.min(SlaClock.next_check_at))
                                    .where(SlaClock.next_check_at <= now)).one()
        self.checks_due.set(due)
        self.checks_late.set((now - oldest).total_seconds() if oldest else 0)
        for status in ("pending", "sending", "failed"):
            self.backlog.labels(status=status).set(counts.get(status, 0))

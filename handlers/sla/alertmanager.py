"""Prometheus Alertmanager webhook payloads (webhook_config, payload version "4") turned into alert events.

No I/O: the HTTP endpoint hands over the decoded JSON body, and stores the events as outages of the
service named by a label. The shape is Alertmanager's notify/webhook Message: version, groupKey,
truncatedAlerts, status, receiver, groupLabels, commonLabels, commonAnnotations, externalURL and alerts[],
each with status, labels, annotations, startsAt, endsAt, generatorURL and fingerprint.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

ALERT_STATUSES = ("firing", "resolved")

# RFC 3339 date-time: fractional seconds of any length (Go sends up to nanoseconds) and a required offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))")

# Go's zero time.Time: Alertmanager's endsAt for an alert that is still firing.
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class AlertEvent:
    fingerprint: str
    status: str  # "firing" | "resolved"
    service: str
    starts_at: datetime
    ends_at: datetime | None  # None while firing
    summary: str
    severity: str | None
    labels: dict[str, str]
    generator_url: str | None
    runbook_url: str | None = None  # the alert's runbook_url annotation


class PayloadError(ValueError):
    """The payload is not an Alertmanager version-4 webhook; `problems` lists every fault by its JSON path."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_rfc3339(text: str) -> datetime | None:
    """The time in UTC, or None if `text` is not an RFC 3339 date-time. Python keeps microseconds, so
    digits beyond the sixth are dropped (truncated, so .9999999 never rolls into the next second)."""
    match = _RFC3339.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, offset_h, offset_m = match.groups()
    microsecond = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        if zulu:
            tz = timezone.utc
        else:
            offset = timedelta(hours=int(offset_h), minutes=int(offset_m))
            tz = timezone(-offset if sign == "-" else offset)
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), microsecond, tz)
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # 2025-02-30, 25:00, offset 24:00, or out of range once in UTC
        return None


def derived_fingerprint(labels: dict[str, str]) -> str:
    """For senders that leave out the fingerprint: sha256 of the labels as compact JSON with sorted keys,
    the first 16 hex digits. Stable across label order, and JSON keeps "a=b,c" and "a" + "b,c" apart."""
    canonical = json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def parse_webhook(payload: object, service_label: str = "service") -> tuple[list[AlertEvent], list[str]]:
    """The alert events in a decoded webhook body, and notes on what was left out (alerts without the
    service label, alerts Alertmanager truncated). Raises PayloadError listing every problem."""
    if not isinstance(payload, dict):
        raise PayloadError([f"payload: expected a JSON object, got {_json_type(payload)}"])
    problems: list[str] = []
    notes: list[str] = []

    version = payload.get("version")
    if version != "4":
        got = "nothing" if "version" not in payload else _show(version)
        problems.append(f'version: expected "4", got {got}')

    truncated = payload.get("truncatedAlerts", 0)
    if not _is_count(truncated):
        problems.append(f"truncatedAlerts: expected a whole number ≥ 0, got {_show(truncated)}")
    elif truncated:
        # Alertmanager's max_alerts cut these off; they are not in the payload, so we cannot record them.
        notes.append(f"{truncated} alert(s) left out by Alertmanager (max_alerts); they are not in this payload")

    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        got = "nothing" if "alerts" not in payload else _json_type(alerts)
        problems.append(f"alerts: expected a list, got {got}")
        alerts = []

    events = []
    for index, alert in enumerate(alerts):
        event, note = _parse_alert(alert, f"alerts[{index}]", service_label, problems)
        if event:
            events.append(event)
        if note:
            notes.append(note)
    if problems:
        raise PayloadError(problems)
    return events, notes


def _parse_alert(alert: object, path: str, service_label: str,
                 problems: list[str]) -> tuple[AlertEvent | None, str | None]:
    """One alert: its event, or a note saying why it was skipped; faults go to `problems`."""
    if not isinstance(alert, dict):
        problems.append(f"{path}: expected an object, got {_json_type(alert)}")
        return None, None
    problems_before = len(problems)

    status = alert.get("status")
    if status not in ALERT_STATUSES:
        problems.append(f"{path}.status: expected \"firing\" or \"resolved\", got {_show(status)}")
    labels = _string_map(alert.get("labels"), f"{path}.labels", problems, required=True)
    annotations = _string_map(alert.get("annotations"), f"{path}.annotations", problems, required=False)
    starts_at = _time(alert, "startsAt", path, problems, required=True)
    ends_at = _time(alert, "endsAt", path, problems, required=status == "resolved")
    if status == "firing":
        ends_at = None  # Alertmanager hides the end of an alert that has not ended yet
    elif starts_at and ends_at and ends_at < starts_at:
        problems.append(f"{path}.endsAt: before startsAt")

    fingerprint = alert.get("fingerprint")
    if "fingerprint" in alert and not (isinstance(fingerprint, str) and fingerprint):
        problems.append(f"{path}.fingerprint: expected a non-empty string, got {_show(fingerprint)}")
    generator_url = alert.get("generatorURL")
    if generator_url is not None and not isinstance(generator_url, str):
        problems.append(f"{path}.generatorURL: expected a string, got {_json_type(generator_url)}")

    if len(problems) > problems_before:
        return None, None
    if "fingerprint" not in alert:  # older senders
        fingerprint = derived_fingerprint(labels)
    service = labels.get(service_label, "").strip()
    if not service:
        name = labels.get("alertname", "(no alertname)")
        return None, f"{path}: skipped {name} ({fingerprint}): no '{service_label}' label"
    summary = next((text.strip() for text in (annotations.get("summary"), annotations.get("description"),
                                               labels.get("alertname")) if text and text.strip()), "")
    return AlertEvent(
        fingerprint=fingerprint,
        status=status,
        service=service,
        starts_at=starts_at,
        ends_at=ends_at,
        summary=summary,
        severity=labels.get("severity") or None,
        labels=labels,
        generator_url=generator_url or None,
        runbook_url=(annotations.get("runbook_url") or "").strip() or None,
    ), None


def _string_map(value: object, path: str, problems: list[str], required: bool) -> dict[str, str]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object of strings, got {_json_type(value)}")
        return {}
    for key, item in value.items():
        if not isinstance(item, str):
            problems.append(f"{path}.{key}: expected a string, got {_json_type(item)}")
    return {key: item for key, item in value.items() if isinstance(item, str)}


def _time(alert: dict, field: str, path: str, problems: list[str], required: bool) -> datetime | None:
    """The field's time in UTC; None when absent (if allowed) or Go's zero time, which means "not set"."""
    if field not in alert:
        if required:
            problems.append(f"{path}.{field}: missing")
        return None
    text = alert[field]
    moment = parse_rfc3339(text) if isinstance(text, str) else None
    if moment is None:
        problems.append(f"{path}.{field}: not an RFC 3339 time: {_show(text)}")
        return None
    if moment == _GO_ZERO_TIME:
        if required:
            problems.append(f"{path}.{field}: not set (Go's zero time {_show(text)})")
        return None
    return moment


def _show(value: object) -> str:
    """A value as JSON for a problem message, cut short: the payload comes from outside."""
    shown = json.dumps(value, ensure_ascii=False, default=repr)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__

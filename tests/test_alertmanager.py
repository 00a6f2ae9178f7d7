"""Alertmanager webhook payloads (CONTRACT.md: POST /api/v1/alertmanager, payload version 4) become alert
events; anything that is not such a payload is refused with every problem named by its JSON path.
The payloads are written out as Alertmanager 0.27 puts them on the wire (Go's encoder: sorted label keys,
nanosecond times, & as \\u0026, the zero endsAt while firing); expected values are worked out by hand."""
from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timezone

import pytest

from handlers.sla.alertmanager import AlertEvent, PayloadError, parse_webhook

UTC = timezone.utc

FIRING = r"""{"receiver":"svcbot","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"HighErrorRate","cluster":"eu-west-1","service":"payments","severity":"page","team":"shop"},"annotations":{"description":"5.2% of requests to payments fail with 5xx over the last 5 minutes.","runbook_url":"https://runbooks.example.internal/high-error-rate","summary":"Payments: error rate above 5%"},"startsAt":"2025-03-29T23:00:00.123456789Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.example.internal:9090/graph?g0.expr=sum+by+%28service%29+%28rate%28http_requests_total%7Bcode%3D~%225..%22%7D%5B5m%5D%29%29+%3E+0.05\u0026g0.tab=1","fingerprint":"5d3a8f1c2b9e0471"},{"status":"firing","labels":{"alertname":"HighErrorRate","cluster":"eu-west-1","service":"checkout","severity":"ticket","team":"shop"},"annotations":{"description":"2.1% of requests to checkout fail with 5xx over the last 5 minutes.","runbook_url":"https://runbooks.example.internal/high-error-rate"},"startsAt":"2025-03-30T01:02:03.5+02:00","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.example.internal:9090/graph?g0.expr=sum+by+%28service%29+%28rate%28http_requests_total%7Bcode%3D~%225..%22%7D%5B5m%5D%29%29+%3E+0.02\u0026g0.tab=1","fingerprint":"a09c47e2d61b38f5"}],"groupLabels":{"alertname":"HighErrorRate"},"commonLabels":{"alertname":"HighErrorRate","cluster":"eu-west-1","team":"shop"},"commonAnnotations":{"runbook_url":"https://runbooks.example.internal/high-error-rate"},"externalURL":"http://alertmanager.example.internal:9093","version":"4","groupKey":"{}/{team=\"shop\"}:{alertname=\"HighErrorRate\"}","truncatedAlerts":0}
"""

RESOLVED = r"""{"receiver":"svcbot","status":"resolved","alerts":[{"status":"resolved","labels":{"alertname":"HighErrorRate","cluster":"eu-west-1","service":"payments","severity":"page","team":"shop"},"annotations":{"description":"5.2% of requests to payments fail with 5xx over the last 5 minutes.","runbook_url":"https://runbooks.example.internal/high-error-rate","summary":"Payments: error rate above 5%"},"startsAt":"2025-03-29T23:00:00.123456789Z","endsAt":"2025-03-29T23:41:30.987654321Z","generatorURL":"http://prometheus.example.internal:9090/graph?g0.expr=sum+by+%28service%29+%28rate%28http_requests_total%7Bcode%3D~%225..%22%7D%5B5m%5D%29%29+%3E+0.05\u0026g0.tab=1","fingerprint":"5d3a8f1c2b9e0471"},{"status":"resolved","labels":{"alertname":"HighErrorRate","cluster":"eu-west-1","service":"checkout","severity":"ticket","team":"shop"},"annotations":{"description":"2.1% of requests to checkout fail with 5xx over the last 5 minutes.","runbook_url":"https://runbooks.example.internal/high-error-rate"},"startsAt":"2025-03-30T01:02:03.5+02:00","endsAt":"2025-03-30T01:20:00+02:00","generatorURL":"http://prometheus.example.internal:9090/graph?g0.expr=sum+by+%28service%29+%28rate%28http_requests_total%7Bcode%3D~%225..%22%7D%5B5m%5D%29%29+%3E+0.02\u0026g0.tab=1","fingerprint":"a09c47e2d61b38f5"}],"groupLabels":{"alertname":"HighErrorRate"},"commonLabels":{"alertname":"HighErrorRate","cluster":"eu-west-1","team":"shop"},"commonAnnotations":{"runbook_url":"https://runbooks.example.internal/high-error-rate"},"externalURL":"http://alertmanager.example.internal:9093","version":"4","groupKey":"{}/{team=\"shop\"}:{alertname=\"HighErrorRate\"}","truncatedAlerts":0}
"""

PAYMENTS_LABELS = {"alertname": "HighErrorRate", "cluster": "eu-west-1", "service": "payments",
                   "severity": "page", "team": "shop"}
CHECKOUT_LABELS = {"alertname": "HighErrorRate", "cluster": "eu-west-1", "service": "checkout",
                   "severity": "ticket", "team": "shop"}
PAYMENTS_URL = ("http://prometheus.example.internal:9090/graph?g0.expr=sum+by+%28service%29+%28rate%28"
                "http_requests_total%7Bcode%3D~%225..%22%7D%5B5m%5D%29%29+%3E+0.05&g0.tab=1")
CHECKOUT_URL = PAYMENTS_URL.replace("0.05&", "0.02&")


def firing() -> dict:
    return json.loads(FIRING)


def problems_of(payload: object) -> list[str]:
    with pytest.raises(PayloadError) as caught:
        parse_webhook(payload)
    assert caught.value.problems, "a PayloadError must list at least one problem"
    return caught.value.problems


def one_alert(**fields) -> dict:
    """The smallest valid payload around one alert; `fields` override or (as None) remove alert fields."""
    alert = {"status": "firing", "labels": {"alertname": "Down", "service": "payments"}, "annotations": {},
             "startsAt": "2025-03-29T23:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
             "fingerprint": "0123456789abcdef"}
    alert.update(fields)
    return {"version": "4", "status": alert["status"], "alerts": [{k: v for k, v in alert.items() if v is not None}]}


# ------------------------------------------------------------------------------------------- realistic payloads

def test_firing_payload_becomes_one_event_per_alert():
    events, notes = parse_webhook(firing())
    assert notes == []
    assert events == [
        AlertEvent(fingerprint="5d3a8f1c2b9e0471", status="firing", service="payments",
                   starts_at=datetime(2025, 3, 29, 23, 0, 0, 123456, tzinfo=UTC), ends_at=None,
                   summary="Payments: error rate above 5%", severity="page", labels=PAYMENTS_LABELS,
                   generator_url=PAYMENTS_URL, runbook_url="https://runbooks.example.internal/high-error-rate"),
        AlertEvent(fingerprint="a09c47e2d61b38f5", status="firing", service="checkout",
                   # 01:02:03.5 at +02:00 is 23:02:03.5 UTC the evening before
                   starts_at=datetime(2025, 3, 29, 23, 2, 3, 500000, tzinfo=UTC), ends_at=None,
                   summary="2.1% of requests to checkout fail with 5xx over the last 5 minutes.",
                   severity="ticket", labels=CHECKOUT_LABELS, generator_url=CHECKOUT_URL,
                   runbook_url="https://runbooks.example.internal/high-error-rate"),
    ]


def test_resolved_follow_up_carries_the_same_fingerprints_and_the_end_times():
    events, notes = parse_webhook(json.loads(RESOLVED))
    assert notes == []
    assert [(e.fingerprint, e.status, e.service, e.starts_at, e.ends_at) for e in events] == [
        ("5d3a8f1c2b9e0471", "resolved", "payments", datetime(2025, 3, 29, 23, 0, 0, 123456, tzinfo=UTC),
         datetime(2025, 3, 29, 23, 41, 30, 987654, tzinfo=UTC)),
        ("a09c47e2d61b38f5", "resolved", "checkout", datetime(2025, 3, 29, 23, 2, 3, 500000, tzinfo=UTC),
         datetime(2025, 3, 29, 23, 20, 0, tzinfo=UTC)),
    ]


def test_times_are_utc():
    events, _ = parse_webhook(json.loads(RESOLVED))
    assert all(e.starts_at.utcoffset().total_seconds() == 0 == e.ends_at.utcoffset().total_seconds()
               for e in events)


# ------------------------------------------------------------------------------------------- timestamps

@pytest.mark.parametrize("text, expected", [
    ("2025-03-29T23:00:00.123456789Z", datetime(2025, 3, 29, 23, 0, 0, 123456, tzinfo=UTC)),  # nanoseconds
    ("2025-03-29T23:00:00.999999999Z", datetime(2025, 3, 29, 23, 0, 0, 999999, tzinfo=UTC)),  # no rounding up
    ("2025-03-29T23:00:00.5Z", datetime(2025, 3, 29, 23, 0, 0, 500000, tzinfo=UTC)),
    ("2025-03-29T23:00:00Z", datetime(2025, 3, 29, 23, 0, 0, tzinfo=UTC)),
    ("2025-03-29t23:00:00z", datetime(2025, 3, 29, 23, 0, 0, tzinfo=UTC)),
    ("2025-03-30T04:00:00.000001+02:00", datetime(2025, 3, 30, 2, 0, 0, 1, tzinfo=UTC)),
    ("2025-03-29T18:30:00-05:30", datetime(2025, 3, 30, 0, 0, 0, tzinfo=UTC)),
])
def test_rfc3339_times_with_any_fraction_and_offset_parse(text, expected):
    events, _ = parse_webhook(one_alert(startsAt=text))
    assert events[0].starts_at == expected
    assert events[0].starts_at.utcoffset().total_seconds() == 0


def test_zero_ends_at_while_firing_is_none():
    events, _ = parse_webhook(one_alert(endsAt="0001-01-01T00:00:00Z"))
    assert (events[0].status, events[0].ends_at) == ("firing", None)


def test_firing_alert_without_ends_at_is_still_firing():
    events, _ = parse_webhook(one_alert(endsAt=None))
    assert events[0].ends_at is None


# ------------------------------------------------------------------------------------------- skipped alerts

def test_alert_without_the_service_label_is_skipped_with_a_note():
    payload = firing()
    del payload["alerts"][1]["labels"]["service"]
    events, notes = parse_webhook(payload)
    assert [e.service for e in events] == ["payments"]
    assert len(notes) == 1
    assert notes[0].startswith("alerts[1]: ")
    assert "HighErrorRate" in notes[0] and "a09c47e2d61b38f5" in notes[0] and "'service'" in notes[0]


def test_an_empty_service_label_counts_as_missing():
    events, notes = parse_webhook(one_alert(labels={"alertname": "Down", "service": " "}))
    assert events == [] and len(notes) == 1


def test_the_service_label_name_is_configurable():
    payload = firing()
    for alert in payload["alerts"]:
        alert["labels"]["app"] = alert["labels"].pop("service")
    events, notes = parse_webhook(payload, service_label="app")
    assert [e.service for e in events] == ["payments", "checkout"] and notes == []
    events, notes = parse_webhook(payload)
    assert events == [] and len(notes) == 2


def test_truncated_alerts_are_accepted_with_a_note():
    payload = firing()
    payload["truncatedAlerts"] = 3
    events, notes = parse_webhook(payload)
    assert len(events) == 2
    assert len(notes) == 1 and "3" in notes[0] and "max_alerts" in notes[0]


def test_empty_alert_list_is_nothing_to_do():
    assert parse_webhook({"version": "4", "status": "resolved", "alerts": []}) == ([], [])


# ------------------------------------------------------------------------------------------- fields

def test_summary_falls_back_to_description_then_alertname():
    labels = {"alertname": "Down", "service": "payments"}
    both = {"summary": "Payments down", "description": "No answer for 5 min"}
    assert parse_webhook(one_alert(annotations=both))[0][0].summary == "Payments down"
    assert parse_webhook(one_alert(annotations={"description": "No answer for 5 min"}))[0][0].summary \
        == "No answer for 5 min"
    assert parse_webhook(one_alert(annotations={"summary": ""}, labels=labels))[0][0].summary == "Down"
    assert parse_webhook(one_alert(annotations=None, labels=labels))[0][0].summary == "Down"


def test_severity_and_generator_url_are_optional():
    event = parse_webhook(one_alert(generatorURL=""))[0][0]
    assert (event.severity, event.generator_url) == (None, None)
    assert parse_webhook(one_alert(generatorURL=None))[0][0].generator_url is None


def test_missing_fingerprint_is_derived_from_the_sorted_labels():
    labels = {"service": "payments", "alertname": "Down", "instance": "pay-1:9100"}
    events, _ = parse_webhook(one_alert(labels=labels, fingerprint=None))
    # the documented derivation: sha256 of the labels as compact, key-sorted JSON; first 16 hex digits
    canonical = '{"alertname":"Down","instance":"pay-1:9100","service":"payments"}'
    assert events[0].fingerprint == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    reordered = dict(reversed(list(labels.items())))
    assert parse_webhook(one_alert(labels=reordered, fingerprint=None))[0][0].fingerprint == events[0].fingerprint
    other = dict(labels, instance="pay-2:9100")
    assert parse_webhook(one_alert(labels=other, fingerprint=None))[0][0].fingerprint != events[0].fingerprint


# ------------------------------------------------------------------------------------------- malformed payloads

def broken(change) -> dict:
    payload = firing()
    change(payload)
    return payload


def set_alert_field(index: int, field: str, value):
    return lambda p: p["alerts"][index].__setitem__(field, value)


def drop_alert_field(index: int, field: str):
    return lambda p: p["alerts"][index].pop(field)


MALFORMED = [
    ([], "payload: expected a JSON object"),
    ("{}", "payload: expected a JSON object"),
    (broken(lambda p: p.update(version="3")), 'version: expected "4", got "3"'),
    (broken(lambda p: p.update(version=4)), 'version: expected "4", got 4'),
    (broken(lambda p: p.pop("version")), 'version: expected "4", got nothing'),
    (broken(lambda p: p.pop("alerts")), "alerts: expected a list, got nothing"),
    (broken(lambda p: p.update(alerts={"0": {}})), "alerts: expected a list, got an object"),
    (broken(lambda p: p["alerts"].__setitem__(1, "HighErrorRate")), "alerts[1]: expected an object"),
    (broken(set_alert_field(1, "startsAt", "yesterday")), "alerts[1].startsAt: not an RFC 3339 time"),
    (broken(set_alert_field(1, "startsAt", "2025-03-29 23:00:00Z")), "alerts[1].startsAt: not an RFC 3339 time"),
    (broken(set_alert_field(0, "startsAt", "2025-03-29T23:00:00")), "alerts[0].startsAt: not an RFC 3339 time"),
    (broken(set_alert_field(0, "startsAt", "2025-02-29T23:00:00Z")), "alerts[0].startsAt: not an RFC 3339 time"),
    (broken(set_alert_field(0, "startsAt", 1743289200)), "alerts[0].startsAt: not an RFC 3339 time"),
    (broken(set_alert_field(0, "startsAt", "0001-01-01T00:00:00Z")), "alerts[0].startsAt: not set"),
    (broken(drop_alert_field(0, "startsAt")), "alerts[0].startsAt: missing"),
    (broken(set_alert_field(0, "endsAt", "soon")), "alerts[0].endsAt: not an RFC 3339 time"),
    (broken(set_alert_field(0, "status", "pending")), 'alerts[0].status: expected "firing" or "resolved"'),
    (broken(drop_alert_field(0, "labels")), "alerts[0].labels: expected an object"),
    (broken(lambda p: p["alerts"][0]["labels"].update(service=7)), "alerts[0].labels.service: expected a string"),
    (broken(set_alert_field(0, "annotations", ["summary"])), "alerts[0].annotations: expected an object"),
    (broken(set_alert_field(0, "fingerprint", "")), "alerts[0].fingerprint: expected a non-empty string"),
    (broken(set_alert_field(0, "fingerprint", 42)), "alerts[0].fingerprint: expected a non-empty string"),
    (broken(set_alert_field(0, "generatorURL", 42)), "alerts[0].generatorURL: expected a string"),
    (broken(lambda p: p.update(truncatedAlerts=-1)), "truncatedAlerts: expected a whole number"),
    (broken(lambda p: p.update(truncatedAlerts="3")), "truncatedAlerts: expected a whole number"),
]


@pytest.mark.parametrize("payload, expected", [pytest.param(p, e, id=e) for p, e in MALFORMED])
def test_malformed_payload_is_refused_naming_the_path(payload, expected):
    problems = problems_of(payload)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_resolved_alert_needs_a_real_end_time_after_its_start():
    resolved = json.loads(RESOLVED)
    zero_end = copy.deepcopy(resolved)
    zero_end["alerts"][0]["endsAt"] = "0001-01-01T00:00:00Z"
    assert problems_of(zero_end) == ['alerts[0].endsAt: not set (Go\'s zero time "0001-01-01T00:00:00Z")']
    no_end = copy.deepcopy(resolved)
    del no_end["alerts"][1]["endsAt"]
    assert problems_of(no_end) == ["alerts[1].endsAt: missing"]
    backwards = copy.deepcopy(resolved)
    backwards["alerts"][0]["endsAt"] = "2025-03-29T22:59:59Z"
    assert problems_of(backwards) == ["alerts[0].endsAt: before startsAt"]


def test_every_problem_is_listed_not_just_the_first():
    payload = firing()
    payload["version"] = "3"
    payload["alerts"][0]["startsAt"] = "yesterday"
    payload["alerts"][1]["status"] = "pending"
    del payload["alerts"][1]["labels"]["service"]  # a note, not a problem; there are no notes when refused
    problems = problems_of(payload)
    assert [problem.split(":")[0] for problem in problems] == ["version", "alerts[0].startsAt", "alerts[1].status"]


def test_payload_error_is_a_value_error_whose_message_lists_the_problems():
    with pytest.raises(ValueError, match=r'version: expected "4".*alerts: expected a list'):
        parse_webhook({"version": "2"})

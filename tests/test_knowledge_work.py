"""Knowledge in the work itself (handlers/knowledge/reuse.py): articles suggested when an incident opens,
linked to it by `incident kb` or a *This helped* button, the runbook an Alertmanager alert names, and
reuse counted. On real runbooks of the Prometheus Operator project (github.com/prometheus-operator/runbooks,
Apache License 2.0; see ../shared/data/runbooks-prometheus-operator/SOURCE.md) where it matters."""
from __future__ import annotations

import shutil
from datetime import timedelta

from sqlalchemy import select

from handlers.core.context import SYSTEM
from handlers.knowledge import reuse
from handlers.knowledge.sync import sync_folder
from handlers.sla import outages
from handlers.sla.alertmanager import parse_webhook
from storage.models import KbTicketLink, Outage
from tests.test_knowledge import KNOWN_ERROR, RELAY, audits, new, ok, run
from tests.test_knowledge_sync import RUNBOOKS

REAL = ("kubernetes/KubePodCrashLooping.md", "kubernetes/KubeNodeNotReady.md", "general/Watchdog.md",
        "etcd/etcdNoLeader.md")


def synced(ctx, tmp_path) -> None:
    """A few of the real runbooks, synced from a folder as git keeps them."""
    for rel in REAL:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(RUNBOOKS / rel, tmp_path / rel)
    assert sync_folder(ctx, tmp_path).problems == []


def test_a_new_incident_suggests_articles_of_its_service_and_this_helped_links_one_once(ctx, clock):
    vpn = new(ctx, "sanne", KNOWN_ERROR)
    relay = new(ctx, "lucas", RELAY.replace("mail queues up", "calls freeze"))
    ok(ctx, "sanne", f"kb publish KB-{vpn}")
    ok(ctx, "lucas", f"kb publish KB-{relay}")

    reply = ok(ctx, "tom", "incident new vpn P3 VPN calls keep freezing")
    ticket = reply.title.split(" ")[0]
    [section] = [s for s in reply.sections if s.title == "From the knowledge library"]
    assert f"KB-{vpn}" in section.text and f"KB-{relay}" not in section.text  # the relay is email's
    [helped] = section.buttons
    assert helped.run == f"incident kb {ticket} KB-{vpn}"

    assert ok(ctx, "tom", helped.run).title == f"KB-{vpn} is now linked to {ticket}"  # tom opened it
    assert ok(ctx, "tom", helped.run).title == f"KB-{vpn} was already linked to {ticket}"
    assert audits(ctx, ticket).count("incident.kb") == 1
    shown = ok(ctx, "tom", f"incident show {ticket}")
    assert f"KB-{vpn} VPN drops every 30 minutes" in [f.value for f in shown.sections[0].fields]
    article_fields = ok(ctx, "tom", f"kb show KB-{vpn}").sections[0].fields
    assert ("Helped with", "1 incident") in [(f.label, f.value) for f in article_fields]

    reply, outcome = run(ctx, "arjun", f"incident kb {ticket} KB-{vpn}")
    assert outcome == "refused"
    reply, outcome = run(ctx, "tom", f"incident kb {ticket} KB-999")
    assert outcome != "ok" and "KB-999" in reply.text
    ok(ctx, "sanne", f"kb retire KB-{vpn}")
    reply, outcome = run(ctx, "tom", f"incident kb {ticket} KB-{relay}")
    assert outcome == "ok"  # a published one of another service may still have helped


def test_reuse_counts_links_resolutions_with_an_article_and_articles_unused_for_a_year(ctx, clock):
    vpn = new(ctx, "sanne", KNOWN_ERROR)
    relay = new(ctx, "lucas", RELAY)
    ok(ctx, "sanne", f"kb publish KB-{vpn}")
    ok(ctx, "lucas", f"kb publish KB-{relay}")
    start = clock()
    clock.advance(days=400)
    first = ok(ctx, "sanne", "incident new vpn P3 VPN drops").title.split(" ")[0]
    second = ok(ctx, "sanne", "incident new vpn P3 VPN drops again").title.split(" ")[0]
    ok(ctx, "sanne", f"incident kb {first} KB-{vpn}")
    ok(ctx, "sanne", f"incident kb {second} KB-{vpn}")
    ok(ctx, "sanne", f"incident resolve {first}")
    ok(ctx, "sanne", "incident new vpn P4 Slow VPN")
    with ctx.sessions() as s:
        counted = reuse.reuse(s, start, clock() + timedelta(seconds=1), clock())
    assert counted.linked == {vpn: 2}
    assert (counted.resolved_with_article, counted.resolved) == (1, 1)
    assert [i for i, _ in counted.unused] == [relay]


ALERT = {"version": "4", "status": "firing", "receiver": "svcbot", "groupLabels": {}, "commonLabels": {},
         "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "groupKey": "{}", "truncatedAlerts": 0}


def alert(name: str, fingerprint: str, service: str = "payments", **annotations) -> dict:
    """An alert as kube-prometheus' rules raise it: its labels and annotations as the project writes them."""
    return {"status": "firing", "labels": {"alertname": name, "namespace": "shop", "pod": "api-7d9f",
                                           "severity": "warning", "service": service},
            "annotations": annotations, "startsAt": "2025-03-29T23:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint}


def test_an_alert_of_the_prometheus_operator_names_its_runbook(ctx, clock, tmp_path):
    synced(ctx, tmp_path)
    alerts = [
        # Named by the article's alerts: the runbook file is named after the alert.
        alert("KubePodCrashLooping", "a1", summary="Pod is crash looping.",
              description='Pod shop/api-7d9f (api) is in waiting state (reason: "CrashLoopBackOff").',
              runbook_url="https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"),
        # A rule of one's own that points at the project's runbook: found by its runbook_url.
        alert("PaymentsNodeDown", "a2", summary="Node is not ready.",
              runbook_url="https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubenodenotready"),
        # A runbook kept elsewhere: the URL itself.
        alert("HighErrorRate", "a3", runbook_url="https://runbooks.example.internal/high-error-rate"),
        alert("NoRunbook", "a4", summary="Nothing to read"),
    ]
    events, _ = parse_webhook({**ALERT, "alerts": alerts})
    answer = outages.apply_alerts(ctx, events, SYSTEM)
    with ctx.sessions() as s:
        runbooks = dict(s.execute(select(Outage.fingerprint, Outage.runbook)).all())
        crash = s.scalar(select(KbTicketLink.article_id).limit(1))  # no ticket: nothing linked
    assert crash is None
    named = {r["alert"]: (r["runbook"], r["title"]) for r in answer["runbooks"]}
    assert named["KubePodCrashLooping"][1] == "Kube Pod Crash Looping"
    assert named["PaymentsNodeDown"][1] == "Kube Node Not Ready"
    assert named["HighErrorRate"] == ("https://runbooks.example.internal/high-error-rate", None)
    assert "NoRunbook" not in named and answer["opened"] == 4
    assert runbooks[f"a1:{events[0].starts_at.isoformat()}"] == named["KubePodCrashLooping"][0]
    assert named["KubePodCrashLooping"][0].startswith("KB-")


def test_a_new_incident_about_a_crash_looping_pod_is_offered_its_runbook(ctx, clock, tmp_path):
    synced(ctx, tmp_path)
    reply = ok(ctx, "tom", "incident new payments P2 checkout pods keep crashing and restarting")
    [section] = [s for s in reply.sections if s.title == "From the knowledge library"]
    assert section.text.splitlines()[0].endswith("Kube Pod Crash Looping (runbook)")
    assert len(section.buttons) <= 3


def test_the_monthly_report_has_a_knowledge_section_in_chat_html_and_pdf(ctx, clock):
    from bot import report_export
    from handlers.reporting import report_figures, reports
    from handlers.services import catalogue_review
    vpn = new(ctx, "sanne", KNOWN_ERROR)
    ok(ctx, "sanne", f"kb publish KB-{vpn}")
    catalogue_review.sweep(ctx)
    clock.advance(days=120)  # the review and every catalogue entry are overdue
    first = ok(ctx, "sanne", "incident new vpn P3 VPN drops <b>again</b>").title.split(" ")[0]
    ok(ctx, "sanne", f"incident kb {first} KB-{vpn}")
    ok(ctx, "sanne", f"incident resolve {first}")
    ok(ctx, "tom", "catalogue confirm payments")
    report = report_figures.report_data(ctx, None, "this-month")
    k = report.knowledge
    assert (k.linked, k.resolved_with_article, k.resolved) == (1, 1, 1)
    assert [(a.article, a.incidents) for a in k.top] == [(f"KB-{vpn}", 1)]
    assert [(s.service, s.articles) for s in k.stale] == [("Remote Access VPN", 1)]
    assert "Payments" not in k.catalogue_overdue and "Remote Access VPN" in k.catalogue_overdue
    [section] = [s for s in reports.report_reply(report).sections if s.title == "Knowledge"]
    assert {f.label: f.value for f in section.fields}["Resolved with an article"] == "1 of 1"
    page = report_export.html(report, [])
    assert 'id="knowledge"' in page and "VPN drops every 30 minutes" in page
    assert report_export.pdf(report, [], compress=False).count(b"Knowledge") >= 1
    assert report_figures.report_data(ctx, "payments", "this-month").knowledge.stale == []

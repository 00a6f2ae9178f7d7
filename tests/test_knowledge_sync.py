"""The knowledge library kept in git, on real runbooks: the 108 runbooks of the Prometheus Operator project
(github.com/prometheus-operator/runbooks, Apache License 2.0; see ../shared/data/runbooks-prometheus-operator/
SOURCE.md), one Markdown file per Prometheus alert, synced with ``handlers.knowledge.sync`` and searched with
what people type when something is wrong. The same tests run on SQLite (FTS5) and PostgreSQL (tsvector)."""
from __future__ import annotations

import shutil

import pytest
from sqlalchemy import func, select

from handlers.knowledge.search import CLOSE, OPEN, search
from handlers.knowledge.sync import markdown_files, sync_folder
from storage.models import AuditRecord, KbAlert, KbArticle, KbVersion
from tests.conftest import SHARED

RUNBOOKS = SHARED / "data" / "runbooks-prometheus-operator" / "content" / "runbooks"


def counts(ctx) -> tuple[int, int, int]:
    with ctx.sessions() as s:
        return tuple(s.scalar(select(func.count()).select_from(model)) for model in (KbArticle, KbVersion, AuditRecord))


def by_source(ctx, source: str) -> KbArticle:
    with ctx.sessions() as s:
        return s.scalar(select(KbArticle).where(KbArticle.source == source))


def test_the_runbooks_become_articles_and_a_sync_follows_the_folder(ctx, clock, tmp_path):
    folder = tmp_path / "runbooks"
    shutil.copytree(RUNBOOKS, folder)
    first = sync_folder(ctx, folder)
    assert first.problems == [] and len(first.created) == 108
    crash = by_source(ctx, "kubernetes/KubePodCrashLooping.md")
    assert (crash.title, crash.kind, crash.state, crash.alerts, crash.tags) == (
        "Kube Pod Crash Looping", "runbook", "published", ["KubePodCrashLooping"], ["kubernetes"])
    assert crash.body.startswith("# KubePodCrashLooping") and "title:" not in crash.body
    # A file with no front matter takes its title from its first heading.
    assert by_source(ctx, "etcd/etcdNoLeader.md").title == "etcdNoLeader"
    with ctx.sessions() as s:  # an alert finds its runbook by index
        assert s.scalar(select(KbAlert.article_id).where(KbAlert.alert == "KubePodCrashLooping")) == crash.id

    before = counts(ctx)
    again = sync_folder(ctx, folder)
    assert (again.changed, again.unchanged, again.problems) == (0, 108, [])
    assert counts(ctx) == before  # not a version, not an audit record more

    clock.advance(days=1)
    page = folder / "kubernetes" / "KubePodCrashLooping.md"
    page.write_text(page.read_text().replace("## Mitigation", "## Mitigation\n\nRoll back the last deployment.\n"))
    gone = folder / "node" / "NodeRAIDDegraded.md"
    kept = gone.read_text()
    gone.unlink()
    (folder / "node" / "Broken.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    changed = sync_folder(ctx, folder)
    raid = by_source(ctx, "node/NodeRAIDDegraded.md")
    assert (changed.updated, changed.retired) == ([f"KB-{crash.id}"], [f"KB-{raid.id}"])
    assert [p.split(":")[0] for p in changed.problems] == ["node/Broken.md"]
    crash = by_source(ctx, "kubernetes/KubePodCrashLooping.md")
    assert crash.version == 2 and "Roll back the last deployment." in crash.body
    assert by_source(ctx, "node/NodeRAIDDegraded.md").state == "retired"

    gone.write_text(kept)
    back = sync_folder(ctx, folder)
    assert back.republished == [f"KB-{raid.id}"] and back.updated == []
    assert by_source(ctx, "node/NodeRAIDDegraded.md").state == "published"


# What someone types when it is going wrong, and the runbook (or one of them) that answers it: none of
# these is a runbook's title.
PHRASES = [
    ("pod keeps restarting", {"KubePodCrashLooping"}),
    ("disk almost full on the node", {"NodeFilesystemAlmostOutOfSpace", "NodeFilesystemSpaceFillingUp"}),
    ("clock is wrong on a server", {"NodeClockSkewDetected", "NodeClockNotSynchronising"}),
    ("certificate expires soon", {"KubeletClientCertificateExpiration", "KubeletServerCertificateExpiration",
                                  "KubeClientCertificateExpiration"}),
    ("prometheus cannot send alerts to alertmanager", {"PrometheusErrorSendingAlertsToAnyAlertmanager",
                                                      "PrometheusErrorSendingAlertsToSomeAlertmanagers",
                                                      "PrometheusNotConnectedToAlertmanagers"}),
    ("etcd cluster lost its leader", {"etcdNoLeader"}),
    ("too many open files", {"NodeFileDescriptorLimit", "NodeFilesystemFilesFillingUp",
                             "NodeFilesystemAlmostOutOfFiles"}),
    ("network card dropping packets", {"NodeNetworkReceiveErrs", "NodeNetworkTransmitErrs"}),
]


def test_what_people_type_finds_the_runbook_ranked_by_the_engine(ctx):
    assert sync_folder(ctx, RUNBOOKS).problems == []
    with ctx.sessions() as s:
        for words, answers in PHRASES:
            hits = search(s, words, 3)
            names = [h.source.rsplit("/", 1)[-1].removesuffix(".md") for h in hits]
            assert answers & set(names), (words, names)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            # A snippet marks the words it matched (an article matched by its title alone may show none).
            assert any(OPEN in h.snippet for h in hits), (words, hits)
        # Stemming: "restarting" finds the texts that say "restart" or "restarts".
        hits = search(s, "restarting", 10)
        assert len(hits) >= 3
        for h in hits:
            marked = h.snippet.split(OPEN, 1)[1].split(CLOSE, 1)[0].lower()
            assert marked.startswith("restart"), h.snippet
        assert search(s, '"no leader"', 5)[0].source == "etcd/etcdNoLeader.md"
        assert search(s, "*** ??", 5) == []


@pytest.mark.e2e
def test_an_operator_syncs_the_folder_and_a_client_searches_it(server_env, start_server):
    """The two doors: `svcbot kb sync` as an operator runs it, and GET /api/v1/kb/search as a client calls it."""
    from tests.conftest import run_cli
    from tests.test_api_e2e import TOKEN, Client, fits
    synced = run_cli(server_env, "kb", "sync", str(RUNBOOKS))
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.startswith("108 new, 0 updated, 0 retired")
    api = Client(start_server(SVCBOT_API_TOKEN=TOKEN).url)
    answer = api.get("/api/v1/kb/search?q=pod+keeps+restarting&limit=3")
    assert answer.status_code == 200, answer.text
    fits(answer.json(), "KbSearchResults")
    results = answer.json()["results"]
    assert len(results) == 3 and "kubernetes/KubePodCrashLooping.md" in [r["source"] for r in results]
    assert all(OPEN not in r["snippet"] for r in results)
    assert api.get("/api/v1/kb/search?limit=3").json() == {"results": []}
    assert api.get("/api/v1/kb/search?q=pod&limit=51").status_code == 400
    assert Client(api.url, token=None).get("/api/v1/kb/search?q=pod").status_code == 401
    # In the work itself: a new incident is offered the runbook, and an alert's outage names it.
    opened = api.post("/api/v1/tickets", {"service": "payments", "priority": "P2",
                                          "title": "checkout pods keep crashing and restarting"})
    assert opened.status_code == 201, opened.text
    fits(opened.json(), "Ticket")
    suggested = opened.json()["suggested_articles"]
    assert 1 <= len(suggested) <= 3 and suggested[0]["title"] == "Kube Pod Crash Looping"
    alert = {"status": "firing", "labels": {"alertname": "KubePodCrashLooping", "service": "payments"},
             "annotations": {"runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/"
                                            "kubepodcrashlooping", "summary": "Pod is crash looping."},
             "startsAt": "2025-03-29T23:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "c0ffee"}
    fired = api.post("/api/v1/alertmanager", {"version": "4", "status": "firing", "alerts": [alert]})
    assert fired.status_code == 200, fired.text
    fits(fired.json(), "AlertmanagerResult")
    [named] = fired.json()["runbooks"]
    assert (named["runbook"], named["title"]) == (suggested[0]["id"], "Kube Pod Crash Looping")


def test_the_repository_papers_at_the_top_of_the_folder_are_not_articles(tmp_path):
    # The shared folder as it came: SOURCE.md and LICENSE beside content/runbooks/.
    files = markdown_files(RUNBOOKS.parent.parent)
    assert len(files) == 108 and all(f.startswith("content/runbooks/") for f in files)
    (tmp_path / "README.md").write_text("# How this repository works\n")
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "README.md").write_text("# Reset a VPN token\n")  # deeper down, an article
    assert list(markdown_files(tmp_path)) == ["guides/README.md"]

"""The knowledge library (handlers/knowledge/) at the handler level: articles written, edited, published and
retired in chat by the people of the demo app.yaml, typed or through the forms, on the real store (SQLite,
or PostgreSQL with SVCBOT_TEST_DATABASE_URL) with the test clock. priya is the service manager; sanne and
lucas are Workplace IT (sanne owns vpn, lucas email); tom owns payments and has no part in those."""
from __future__ import annotations

import json
import re
from datetime import timedelta

from sqlalchemy import select

from bot import render
from handlers import gdpr
from handlers.core.context import Command
from handlers.core.people import resolve_actor
from handlers.router import dispatch, submit_form
from storage.models import AuditRecord, KbArticle, KbReview, KbVersion

KNOWN_ERROR = ('kb new kind=known-error title="VPN drops every 30 minutes" services=vpn tags=vpn '
               'symptom="The tunnel resets on the half hour and calls freeze" '
               'workaround="Reconnect with the TCP profile" cause="UDP sessions time out at the firewall" fix=CHG-4')
RELAY = ('kb new title="Restart the mail relay" services=email '
         'body="When mail queues up, restart postfix on the relay and watch the queue drain."')


def actor(ctx, pid: str, platform: str = "slack"):
    p = ctx.config.person(pid)
    return resolve_actor(ctx, platform, getattr(p, platform), p.name)


def run(ctx, pid: str, text: str, platform: str = "slack"):
    return dispatch(ctx, Command(actor(ctx, pid, platform), text))


def ok(ctx, pid: str, text: str, platform: str = "slack"):
    reply, outcome = run(ctx, pid, text, platform)
    assert outcome == "ok", (reply.title, reply.text)
    return reply


def new(ctx, pid: str, text: str) -> int:
    return int(re.match(r"KB-(\d+) saved as a draft", ok(ctx, pid, text).title)[1])


def found(ctx, words: str) -> list[str]:
    """The articles `kb search` shows, by number."""
    reply = ok(ctx, "tom", f"kb search {words}")
    return [s.title.split(" · ")[0] for s in reply.sections]


def article(ctx, article_id: int) -> KbArticle:
    with ctx.sessions() as s:
        return s.get(KbArticle, article_id)


def audits(ctx, subject: str) -> list[str]:
    with ctx.sessions() as s:
        return list(s.scalars(select(AuditRecord.action).where(AuditRecord.subject == subject)
                              .order_by(AuditRecord.id)))


def test_a_draft_is_found_only_once_published_and_every_state_change_is_audited(ctx, clock):
    kb = new(ctx, "sanne", KNOWN_ERROR)
    assert article(ctx, kb).state == "draft" and article(ctx, kb).owner == "sanne"
    assert found(ctx, "vpn calls keep freezing") == []

    reply, outcome = run(ctx, "tom", f"kb publish KB-{kb}")
    assert outcome == "refused" and "owner" in reply.text
    ok(ctx, "lucas", f"kb publish KB-{kb}")  # the team of its service
    published = article(ctx, kb)
    assert published.next_review_at == clock() + timedelta(days=ctx.config.knowledge.review_days_for("known-error"))
    assert published.fixed_by == "CHG-4"

    reply = ok(ctx, "tom", "kb search vpn calls keep freezing")
    [result] = reply.sections
    assert result.title == f"KB-{kb} · VPN drops every 30 minutes"
    assert "*freeze*" in result.text  # the matched word, stemmed from "freezing", is marked in the snippet
    assert [b.run for b in result.buttons] == [f"kb show KB-{kb}", f"kb share KB-{kb}"]
    shared = ok(ctx, "tom", f"kb share KB-{kb}")
    assert shared.private is False and "Reconnect with the TCP profile" in shared.text

    ok(ctx, "priya", f"kb retire KB-{kb}")
    assert found(ctx, "vpn calls keep freezing") == []
    reply, outcome = run(ctx, "sanne", f"kb edit KB-{kb} tags=vpn,tunnel")
    assert outcome == "user_error" and "retired" in reply.text
    assert audits(ctx, f"KB-{kb}") == ["kb.created", "kb.published", "kb.retired"]


def test_every_edit_is_a_version_with_who_and_when_and_the_history_reads_them_back(ctx, clock):
    kb = new(ctx, "lucas", RELAY)
    clock.advance(hours=2)
    ok(ctx, "sanne", f'kb edit KB-{kb} body="When mail queues up, restart postfix and check the TLS certificate."')
    clock.advance(days=1)
    edited = ok(ctx, "lucas", f"kb edit KB-{kb} tags=mail,relay review=30")
    assert edited.title.startswith(f"KB-{kb} is now v3") and "tags, review_days" in edited.text
    unchanged = ok(ctx, "lucas", f"kb edit KB-{kb} tags=mail,relay")
    assert "unchanged" in unchanged.title
    reply, outcome = run(ctx, "tom", f"kb edit KB-{kb} tags=payments")
    assert outcome == "refused"

    with ctx.sessions() as s:
        versions = s.execute(select(KbVersion.version, KbVersion.author, KbVersion.at, KbVersion.changed)
                             .where(KbVersion.article_id == kb).order_by(KbVersion.version)).all()
    start = clock() - timedelta(days=1, hours=2)
    assert versions == [(1, "lucas", start, []), (2, "sanne", start + timedelta(hours=2), ["body"]),
                        (3, "lucas", clock(), ["tags", "review_days"])]
    history = ok(ctx, "tom", f"kb history KB-{kb}").text.splitlines()
    assert [line.split(" ")[0] for line in history] == ["*v3*", "*v2*", "*v1*"]
    assert "Sanne de Vries" in history[1] and "body" in history[1]
    first = ok(ctx, "tom", f"kb show KB-{kb} 1")
    assert "watch the queue drain" in first.text and "TLS" not in first.text
    assert "TLS certificate" in ok(ctx, "tom", f"kb show KB-{kb}").sections[-1].text
    assert article(ctx, kb).review_days == 30


def test_the_form_opens_in_chat_names_each_wrong_field_and_edits_with_what_is_there(ctx):
    reply = ok(ctx, "sanne", "kb new")
    assert reply.form.name == "kb_new"
    sanne = actor(ctx, "sanne")
    wrong = {"title": "VPN drops", "kind": "known-error", "services": ["vpn", "nope"], "cause": "x" * 3001}
    answer, outcome, invalid = submit_form(ctx, Command(sanne, "", via="form"), "kb_new", wrong, {})
    assert outcome == "user_error"
    assert set(invalid.errors) == {"services", "symptom", "workaround", "cause"}
    assert answer.form.name == "kb_new" and next(i for i in answer.form.inputs if i.id == "title").value == "VPN drops"

    right = {"title": "Reset a VPN token", "kind": "how-to", "services": ["vpn"],
             "body": "Open the portal, choose *Tokens*, then Reset.", "tags": "vpn, token"}
    answer, outcome, _ = submit_form(ctx, Command(sanne, "", via="form"), "kb_new", right, {})
    assert outcome == "ok"
    kb = int(re.match(r"KB-(\d+)", answer.title)[1])
    assert article(ctx, kb).tags == ["vpn", "token"] and article(ctx, kb).review_days == 365

    teams = ok(ctx, "lucas", f"kb edit KB-{kb}", platform="teams")
    form = teams.form
    assert form.name == "kb_edit" and form.context == {"article": kb}
    assert {i.id: i.value for i in form.inputs}["services"] == ["vpn"]
    lucas = actor(ctx, "lucas", "teams")
    answer, outcome, _ = submit_form(ctx, Command(lucas, "", via="form"), "kb_edit",
                                     {**{i.id: i.value for i in form.inputs}, "title": "Reset a VPN hardware token"},
                                     form.context)
    assert outcome == "ok" and answer.text == "Changed: title."
    with ctx.sessions() as s:
        assert s.scalar(select(KbVersion.via).where(KbVersion.article_id == kb, KbVersion.version == 2)) == "form"


def test_article_text_can_neither_mention_nor_hide_a_link_nor_carry_html(ctx):
    kb = new(ctx, "lucas", 'kb new title="Relay <!channel> down" services=email body="Tell <!here> then '
                           '[open the runbook](https://evil.example/x) <script>alert(1)</script>"')
    ok(ctx, "lucas", f"kb publish KB-{kb}")
    for reply in (ok(ctx, "tom", f"kb show KB-{kb}"), ok(ctx, "tom", f"kb share KB-{kb}"),
                  ok(ctx, "tom", "kb search runbook relay")):
        message = render.slack_message(reply)
        # Slack reads mentions in mrkdwn (the header is plain text, shown as typed).
        slack = json.dumps([message["text"], message["blocks"][1:]])
        teams = json.dumps(render.teams_card(reply))
        assert "<!channel>" not in slack and "<!here>" not in slack and "&lt;!here&gt;" in slack
        for out in (slack, teams):
            assert "](https://evil.example" not in out  # the link's text no longer hides where it goes
            assert "<script>" not in out
        if not reply.title.startswith("Knowledge for"):  # a search's snippet may end inside the link
            assert "open the runbook (https://evil.example/x)" in teams  # where it goes is shown, as text


def test_articles_from_git_are_edited_there(ctx, tmp_path):
    from handlers.knowledge.sync import sync_folder
    (tmp_path / "vpn").mkdir()
    (tmp_path / "vpn" / "VpnTunnelDown.md").write_text("---\ntitle: VPN tunnel down\nservices: [vpn]\nowner: sanne\n"
                                                       "---\n\n# VPN tunnel down\n\nRestart the gateway.\n")
    [number] = sync_folder(ctx, tmp_path).created
    shown = ok(ctx, "sanne", f"kb show {number}")
    assert "git: vpn/VpnTunnelDown.md" in json.dumps(shown.to_dict())
    assert [b.label for b in shown.buttons] == ["Share in channel"]
    for verb in ("edit", "retire", "publish"):
        reply, outcome = run(ctx, "priya", f"kb {verb} {number} tags=x" if verb == "edit" else f"kb {verb} {number}")
        assert outcome == "user_error" and "comes from git (vpn/VpnTunnelDown.md)" in reply.text


def test_gdpr_export_lists_authorship_and_reviews_and_erase_keeps_them(ctx, clock):
    kb = new(ctx, "lucas", RELAY)
    ok(ctx, "sanne", f"kb edit KB-{kb} tags=mail")
    with ctx.change(Command(actor(ctx, "sanne"), "review")) as work:
        work.session.add(KbReview(article_id=kb, person_id="sanne", outcome="verified", note="Still right", at=clock()))
    data = gdpr.export(ctx, "sanne")
    assert data["knowledge_versions_written"] == [{"article": f"KB-{kb}", "version": 2, "at": clock().isoformat()}]
    assert data["knowledge_reviews"] == [{"article": f"KB-{kb}", "outcome": "verified", "note": "Still right",
                                          "at": clock().isoformat()}]
    assert gdpr.export(ctx, "lucas")["knowledge_articles"] == [
        {"article": f"KB-{kb}", "title": "Restart the mail relay", "owner": True, "wrote_it": True}]
    gdpr.erase(ctx, "sanne")
    assert gdpr.export(ctx, "sanne")["knowledge_reviews"] == data["knowledge_reviews"]  # governance, kept

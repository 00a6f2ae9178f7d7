"""Scheduled digests at the handler level (handlers/reporting/digests.py) on the real store with the test clock: the
slots of a cron in a time zone, posted once across restarts and concurrent sweeps, late ones marked,
older ones skipped; what each section says; `digest preview` and `digest send`; deployment templates."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from bot import render
from handlers.core.config import cron_trigger
from handlers.core.config_loading import ConfigError, load_config, parse_config
from handlers.core.context import Reply
from handlers.reporting import digests
from storage.models import AuditRecord, OutboxMessage, ScheduledRun
from tests.conftest import demo_config
from tests.test_surveys import all_text, ok, refused, run, utc

OPS_SLACK = "C0OPS00001"


def digest(name: str, cron: str = "0 9 * * *", zone: str = "Europe/London", **kw) -> dict:
    return {"name": name, "channel": "ops", "cron": cron, "timezone": zone,
            "sections": kw.pop("sections", ["status", "incidents", "breaches", "changes"]), **kw}


@pytest.fixture
def use_digests(ctx):
    """Replace the demo's digests with these."""
    def use(*items: dict):
        ctx.config = parse_config(yaml.safe_dump(demo_config(digests=list(items)), sort_keys=False))
        return ctx.config
    return use


def posts(ctx, name: str, platform: str = "slack") -> list[OutboxMessage]:
    with ctx.sessions() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.subject == f"digest:{name}",
                                                          OutboxMessage.platform == platform)
                              .order_by(OutboxMessage.id)))


def runs(ctx, name: str) -> list[ScheduledRun]:
    with ctx.sessions() as s:
        return list(s.scalars(select(ScheduledRun).where(ScheduledRun.job == f"digest:{name}")
                              .order_by(ScheduledRun.slot_at)))


def sweep_through(ctx, clock, until: datetime, step: timedelta = timedelta(minutes=5)) -> None:
    while clock.t < until:
        digests.sweep(ctx)
        clock.advance(seconds=step.total_seconds())
    digests.sweep(ctx)


# --- the schedule ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, weekdays", [
    ("0 9 * * 1", "mon"), ("0 9 * * 0", "sun"), ("0 9 * * 7", "sun"), ("0 9 * * 1-5", "mon,tue,wed,thu,fri"),
    ("0 9 * * 5-7", "sun,fri,sat"), ("0 9 * * */2", "sun,tue,thu,sat"), ("0 9 * * mon-fri", "mon-fri"),
    ("0 9 * * 1,3", "mon,wed"), ("0 9 * * *", "*")])
def test_cron_weekdays_mean_what_they_mean_in_crontab(expr, weekdays):
    assert str(cron_trigger(expr, "UTC").fields[4]) == weekdays


def test_a_monday_digest_comes_on_monday():
    trigger = cron_trigger("0 9 * * 1", "Europe/London")
    first = trigger.get_next_fire_time(None, utc(2026, 11, 24, 12))  # a Tuesday
    assert first == utc(2026, 11, 30, 9) and first.strftime("%a") == "Mon"


def test_london_and_singapore_each_post_once_a_day_in_their_own_morning(ctx, clock, use_digests):
    use_digests(digest("london"), digest("singapore", zone="Asia/Singapore"))
    clock.to(utc(2026, 11, 24, 0, 0))
    sweep_through(ctx, clock, utc(2026, 11, 26, 0, 0))
    london, singapore = posts(ctx, "london"), posts(ctx, "singapore")
    # London is on GMT in November: 09:00 there is 09:00 UTC. Singapore is UTC+8: 09:00 is 01:00 UTC.
    assert [p.created_at for p in london] == [utc(2026, 11, 24, 9), utc(2026, 11, 25, 9)]
    assert [p.created_at for p in singapore] == [utc(2026, 11, 24, 1), utc(2026, 11, 25, 1)]
    assert [r.outcome for r in runs(ctx, "london")] == ["start", "posted", "posted"]
    assert all(p.target == OPS_SLACK for p in london + singapore)
    assert "Tue 24 Nov" in london[0].message["title"] and "Wed 25 Nov" in singapore[1].message["title"]


def test_a_digest_follows_its_zone_across_the_clock_change(ctx, clock, use_digests):
    use_digests(digest("london", cron="0 9 * * *"))
    clock.to(utc(2026, 3, 28, 0, 0))  # London moves to BST on Sunday 29 March 2026
    sweep_through(ctx, clock, utc(2026, 3, 31, 0, 0), step=timedelta(minutes=10))
    assert [p.created_at for p in posts(ctx, "london")] == [utc(2026, 3, 28, 9), utc(2026, 3, 29, 8),
                                                             utc(2026, 3, 30, 8)]


def test_first_sight_owes_no_earlier_slot(ctx, clock, use_digests):
    use_digests(digest("london"))
    clock.to(utc(2026, 11, 24, 9, 30))  # installed half an hour after today's slot
    digests.sweep(ctx)
    assert posts(ctx, "london") == []
    assert [r.outcome for r in runs(ctx, "london")] == ["start"]


def test_first_sight_just_after_a_slot_posts_it(ctx, clock, use_digests):
    use_digests(digest("london"))
    clock.to(utc(2026, 11, 24, 9, 0, 20))  # the digest's first sweep came 20 s after its first slot
    assert digests.sweep(ctx) == 1
    [post] = posts(ctx, "london")
    assert not post.message["text"].startswith("⏰")
    assert [r.outcome for r in runs(ctx, "london")] == ["start", "posted"]
    clock.advance(seconds=30)
    assert digests.sweep(ctx) == 0


def test_a_restart_across_the_slot_posts_it_once_marked_late(ctx, clock, use_digests):
    use_digests(digest("london"))
    clock.to(utc(2026, 11, 25, 8, 59, 59))
    digests.sweep(ctx)  # running until 08:59:59 …
    clock.to(utc(2026, 11, 25, 9, 2))  # … and again from 09:02
    assert digests.sweep(ctx) == 1
    for _ in range(3):
        clock.advance(seconds=2)
        assert digests.sweep(ctx) == 0
    [post] = posts(ctx, "london")
    assert post.created_at == utc(2026, 11, 25, 9, 2)
    assert post.message["text"].startswith("⏰ Late: due at 09:00 GMT, sent at 09:02")
    assert [(r.slot_at, r.outcome) for r in runs(ctx, "london")][1:] == [(utc(2026, 11, 25, 9), "late")]
    assert len(posts(ctx, "london", "teams")) == 1


def test_on_time_is_not_marked_late(ctx, clock, use_digests):
    use_digests(digest("london"))
    clock.to(utc(2026, 11, 25, 8, 59, 58))
    digests.sweep(ctx)
    clock.to(utc(2026, 11, 25, 9, 0, 2))
    digests.sweep(ctx)
    [post] = posts(ctx, "london")
    assert "Late" not in post.message["text"]
    assert runs(ctx, "london")[-1].outcome == "posted"


def test_a_slot_older_than_the_grace_is_skipped_and_logged(ctx, clock, use_digests, caplog):
    use_digests(digest("london", late_grace="2 hours"))
    clock.to(utc(2026, 11, 25, 8, 0))
    digests.sweep(ctx)
    clock.to(utc(2026, 11, 25, 11, 0, 1))  # the 09:00 slot is now 2 hours and a second old
    with caplog.at_level(logging.WARNING, logger="svcbot"):
        assert digests.sweep(ctx) == 0
    assert posts(ctx, "london") == []
    assert [(r.slot_at, r.outcome) for r in runs(ctx, "london")][1:] == [(utc(2026, 11, 25, 9), "skipped")]
    assert "digest:london: skipped 1 missed slot(s)" in caplog.text
    clock.to(utc(2026, 11, 26, 9, 0))  # the next day comes as usual
    assert digests.sweep(ctx) == 1


def test_after_a_long_stop_only_the_latest_slot_within_grace_is_posted(ctx, clock, use_digests):
    use_digests(digest("hourly", cron="0 * * * *", late_grace="2 hours"))
    clock.to(utc(2026, 11, 25, 4, 30))
    digests.sweep(ctx)
    clock.to(utc(2026, 11, 25, 10, 20))  # stopped from 04:30 to 10:20: slots 05:00 … 10:00 were missed
    assert digests.sweep(ctx) == 1
    outcomes = [(r.slot_at.hour, r.outcome) for r in runs(ctx, "hourly")][1:]
    assert outcomes == [(5, "skipped"), (6, "skipped"), (7, "skipped"), (8, "skipped"), (9, "skipped"),
                        (10, "late")]
    assert len(posts(ctx, "hourly")) == 1


def test_two_sweeps_at_once_post_a_slot_once(runtime, clock, use_digests, database_url, config_file):
    """Two replicas, each with its own engine on the same database, sweeping at the same moment."""
    from bot.runtime import Runtime
    use_digests(digest("london"))
    other = Runtime.from_file(str(config_file), database_url)
    try:
        other.ctx.config, other.ctx.now = runtime.ctx.config, clock
        clock.to(utc(2026, 11, 25, 8, 59))
        digests.sweep(runtime.ctx)
        clock.to(utc(2026, 11, 25, 9, 0, 1))
        start = threading.Barrier(2)
        done = []

        def replica(ctx):
            start.wait()
            done.append(digests.sweep(ctx))

        threads = [threading.Thread(target=replica, args=(c,)) for c in (runtime.ctx, other.ctx)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(done) == [0, 1]
        assert len(posts(runtime.ctx, "london")) == 1
    finally:
        other.engine.dispose()


# --- what a digest says ---------------------------------------------------------------------------------

def test_a_quiet_day_is_one_line(ctx, clock, use_digests):
    use_digests(digest("london", sections=["status", "incidents", "breaches", "at-risk", "approvals", "changes",
                                           "surveys", "csi"]))
    clock.to(utc(2026, 11, 25, 8, 0))
    digests.sweep(ctx)
    clock.to(utc(2026, 11, 25, 9, 0))
    digests.sweep(ctx)
    [post] = posts(ctx, "london")
    reply = Reply.from_dict(post.message)
    assert reply.title == "☀️ London — Wed 25 Nov: a quiet day"
    assert reply.sections == [] and "\n" not in reply.text
    assert reply.text == ("All 7 services operational; no open incidents; no breaches since the last digest; "
                          "no clocks at risk; no changes waiting for approval; no changes in the next 3 days; "
                          "no surveys closed or open; no improvement actions due in the next two weeks.")
    blocks = render.slack_message(reply)["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section"]


def test_sections_report_what_happened_and_fold_the_quiet_ones(ctx, clock, use_digests):
    use_digests(digest("london", sections=["status", "incidents", "breaches", "changes", "csi"]))
    clock.to(utc(2026, 11, 24, 8, 0))
    digests.sweep(ctx)
    clock.to(utc(2026, 11, 24, 9, 0))
    digests.sweep(ctx)  # Tuesday's digest: quiet
    ok(ctx, "tom", "service set payments degraded Card payments are slow")
    ok(ctx, "tom", "incident new payments P1 Card payments fail for Amex")
    ok(ctx, "priya", 'csi add title="Publish VPN set-up steps" owner=sanne due=2026-11-20 service=vpn')
    clock.to(utc(2026, 11, 25, 9, 0))  # P1 resolution (4 business hours) breached on Tuesday afternoon
    digests.sweep(ctx)
    reply = Reply.from_dict(posts(ctx, "london")[-1].message)
    text = all_text(reply)
    assert reply.title == "London — Wed 25 Nov"
    titles = [s.title for s in reply.sections]
    assert titles == ["Some services are affected", "Open incidents", "Breaches since Tue 09:00", "Improvement actions due"]
    assert "🟡 *Payments Gateway* — degraded: Card payments are slow" in text
    assert "1 open (1 P1)\nINC-1 P1 Payments Gateway: Card payments fail for Amex — new" in text
    assert "INC-1 P1 Payments Gateway · SLA SLA-PAY resolution, due Tue 13:00" in text
    assert "CSI-1 Publish VPN set-up steps — Sanne de Vries, overdue since 20 Nov" in text
    assert reply.footer == "Also: no changes in the next 3 days."
    clock.to(utc(2026, 11, 26, 9, 0))  # the next day: the breach was told already
    digests.sweep(ctx)
    assert "Breaches since" not in all_text(Reply.from_dict(posts(ctx, "london")[-1].message))


# --- the commands ---------------------------------------------------------------------------------------

def test_preview_changes_nothing(ctx, clock):
    reply = ok(ctx, "tom", "digest preview morning-ops")
    assert reply.private and "Preview: not posted. It goes to #ops" in reply.footer
    with ctx.sessions() as s:
        assert s.scalars(select(OutboxMessage)).all() == [] and s.scalars(select(ScheduledRun)).all() == []


def test_send_by_hand_posts_now_and_keeps_the_schedule(ctx, clock):
    clock.to(utc(2026, 11, 24, 7, 0))
    digests.sweep(ctx)
    reply = ok(ctx, "priya", "digest send morning-ops", key="Ev-1")
    assert reply.title == "Digest morning-ops posted to #ops" and reply.footer == "Slack and Teams"
    assert len(posts(ctx, "morning-ops")) == 1 and len(posts(ctx, "morning-ops", "teams")) == 1
    again, outcome = run(ctx, "priya", "digest send morning-ops", key="Ev-1")  # Slack retried the command
    assert outcome == "duplicate" and len(posts(ctx, "morning-ops")) == 1
    with ctx.sessions() as s:
        audit = s.scalars(select(AuditRecord).where(AuditRecord.action == "digest.sent")).all()
    assert [(a.person_id, a.subject) for a in audit] == [("priya", "digest:morning-ops")]
    clock.to(utc(2026, 11, 24, 8, 0))  # the scheduled slot still comes
    assert digests.sweep(ctx) == 1
    assert len(posts(ctx, "morning-ops")) == 2


def test_send_is_for_service_managers(ctx, clock):
    text = refused(ctx, "tom", "digest send morning-ops", outcome="refused")
    assert "Only service managers can send a digest by hand" in text
    with ctx.sessions() as s:
        assert s.scalars(select(OutboxMessage)).all() == []


@pytest.mark.parametrize("words, message", [
    ("digest preview", "Use `digest list`"),
    ("digest preview nightly", "There is no digest 'nightly'. Digests: morning-ops, pune-morning, weekly-service-review."),
    ("digest publish morning-ops", "Use `digest list`"),
])
def test_wrong_digest_commands_say_what_is_wrong(ctx, words, message):
    assert message in refused(ctx, "priya", words)


def test_digest_list_shows_when_next(ctx, clock):
    clock.to(utc(2026, 11, 24, 12, 0))
    text = all_text(ok(ctx, "priya", "digest list"))
    assert "Wed 25 Nov 08:00 GMT" in text and "Mon 30 Nov 09:00 CET" in text


# --- configuration and templates ------------------------------------------------------------------------

@pytest.mark.parametrize("change, problem", [
    ({"sections": ["status", "weather"]}, "digests[0].sections[1]"),
    ({"sections": []}, "digests[0].sections"),
    ({"cron": "0 9 * *"}, "expected 5 fields"),
    ({"cron": "0 9 * * 8"}, "weekdays run from 0 (Sunday) to 7"),
    ({"late_grace": "2 business hours"}, "the grace is clock time"),
    ({"timezone": "Europe/Londen"}, "digests[0].timezone"),
    ({"channel": "nowhere"}, "digests[0].channel: unknown channel 'nowhere'"),
])
def test_a_wrong_digest_in_app_yaml_is_refused_by_its_path(change, problem):
    with pytest.raises(ConfigError) as err:
        parse_config(yaml.safe_dump(demo_config(digests=[{**digest("london"), **change}])))
    assert problem in "\n".join(err.value.problems)


def write_config(tmp_path: Path, templates: str | None) -> Path:
    cfg = demo_config()
    if templates:
        cfg["bot"] = {**cfg.get("bot", {}), "templates": templates}
    path = tmp_path / "conf" / "app.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_templates_folder_must_exist_and_parse(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, "ours"))
    assert err.value.problems[0].startswith("bot.templates: no folder 'ours'")
    (tmp_path / "conf" / "ours" / "slack").mkdir(parents=True)
    (tmp_path / "conf" / "ours" / "slack" / "digest.json.j2").write_text("{{ reply.title ")
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, "ours"))
    assert err.value.problems[0].startswith("bot.templates: slack/digest.json.j2, line 1:")


def test_a_deployment_template_replaces_the_built_in_one(tmp_path, caplog):
    folder = tmp_path / "conf" / "ours" / "slack"
    folder.mkdir(parents=True)
    (folder / "digest.json.j2").write_text(
        '{"text": {{ reply.title | tojson }}, "blocks": [{"type": "section", "text": {"type": "mrkdwn", '
        '"text": {{ ("Open: " ~ data.sections.incidents.open) | tojson }}}}]}')
    cfg = load_config(write_config(tmp_path, "ours"))
    assert cfg.bot.templates == str((tmp_path / "conf" / "ours").resolve())
    reply = Reply(title="London", template="digest", data={"sections": {"incidents": {"open": 3}}})
    try:
        render.use_templates(cfg.bot.templates)
        assert render.slack_message(reply)["blocks"][0]["text"]["text"] == "Open: 3"
        # Teams and text have no replacement here: the built-in digest templates are used.
        assert render.teams_card(reply)["body"][0]["text"] == "London"
        # A template that fails when rendered must not lose the message: the built-in one is used.
        with caplog.at_level(logging.ERROR, logger="svcbot"):
            message = render.slack_message(Reply(title="London", template="digest", data={}))
        assert message["blocks"][0]["type"] == "header"
        assert "template slack/digest.json.j2 from" in caplog.text
    finally:
        render.use_templates(None)


def test_every_platform_renders_a_digest(ctx, clock):
    ok(ctx, "tom", "incident new payments P2 Refunds are slow")
    with ctx.sessions() as s:
        reply = digests.compose(ctx, s, ctx.config.digests[0], clock.t, clock.t - timedelta(days=1),
                                late_for=clock.t - timedelta(minutes=3))
    blocks = render.slack_message(reply)["blocks"]
    assert blocks[1]["text"]["text"].startswith("⏰ Late: due at 08:57 GMT")
    assert {"type": "divider"} in blocks
    card = render.teams_card(reply)
    assert card["type"] == "AdaptiveCard" and any(b.get("type") == "Container" for b in card["body"])
    text = render.text(reply)
    assert text.splitlines()[0] == reply.title and "  INC-1 P2 Payments Gateway: Refunds are slow — new" in text
    assert "1 open (1 P2)" in text

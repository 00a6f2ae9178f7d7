"""`svcbot gdpr export USER` and `svcbot gdpr erase USER`, run as an operator runs them."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import create_engine, insert

from storage.models import AuditRecord, HomeView, Subscription, Survey, SurveyAnswer
from tests.conftest import db_rows
from tests.test_cli import cli, no_traceback  # noqa: F401 - the fixture is used by name


def _console(cli, person: str, *commands: str) -> None:
    args = ["console", "--as", person]
    for c in commands:
        args += ["-c", c]
    result = cli(*args)
    assert result.returncode == 0, result.stderr


def _answered(cli) -> None:
    """A named survey and an anonymous one, both answered by tom, who also follows a service."""
    _console(cli, "priya", 'survey new question="Is the VPN fast enough?" scale=yesno people=tom,sanne anonymous=no',
             'survey new question="How is the service desk?" scale=csat group=payments-eng')
    _console(cli, "tom", 'survey answer SRV-1 yes "Except on Mondays"', "survey answer SRV-2 2", "subscribe vpn")


def test_export_lists_named_answers_and_never_anonymous_ones(cli, database_url):
    _answered(cli)
    result = cli("gdpr", "export", "U0TOM0002")  # a Slack account id finds the person too
    no_traceback(result)
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["person"]["id"] == "tom"
    assert {"platform": "slack", "id": "U0TOM0002"} in data["accounts"]
    assert data["subscriptions"] == ["vpn"]
    [answer] = data["survey_answers"]
    assert (answer["survey"], answer["answer"], answer["comment"]) == ("SRV-1", "yes", "Except on Mondays")
    assert "SRV-2" not in result.stdout  # the anonymous answer is tom's, and nothing says so


def test_erase_deletes_named_answers_and_subscriptions_and_unnames_their_audit(cli, database_url):
    _answered(cli)
    with create_engine(database_url).begin() as conn:  # tom opened his Slack home once
        conn.execute(insert(HomeView).values(platform="slack", external_id="U0TOM0002", person_id="tom",
                                             opened_at=datetime.now(timezone.utc)))
    assert [h["platform"] for h in json.loads(cli("gdpr", "export", "tom").stdout)["home_opened"]] == ["slack"]
    result = cli("gdpr", "erase", "tom")
    no_traceback(result)
    assert result.returncode == 0
    assert "1 named survey answers, 1 subscriptions, 1 home views" in result.stdout
    answers = db_rows(database_url, SurveyAnswer)
    assert [(a.survey_id, a.person_id) for a in answers] == [(2, None)]  # the anonymous answer stays, unnamed
    assert db_rows(database_url, Subscription) == []
    answered = db_rows(database_url, AuditRecord, AuditRecord.action == "survey.answer")
    assert len(answered) == 2 and all(a.person_id is None for a in answered)
    [erased] = db_rows(database_url, AuditRecord, AuditRecord.action == "gdpr.erase")
    assert erased.subject == "tom" and erased.detail == {"survey_answers": 1, "subscriptions": 1, "home_views": 1}
    again = json.loads(cli("gdpr", "export", "tom").stdout)
    assert again["survey_answers"] == [] and again["subscriptions"] == [] and again["home_opened"] == []


def test_an_unknown_user_is_refused_and_nothing_changes(cli, database_url):
    _answered(cli)
    before = db_rows(database_url, SurveyAnswer)
    for action in ("export", "erase"):
        result = cli("gdpr", action, "U0NOBODY99")
        no_traceback(result)
        assert result.returncode == 2
        assert "knows no person or account 'U0NOBODY99'" in result.stderr
    assert len(db_rows(database_url, SurveyAnswer)) == len(before)
    assert db_rows(database_url, AuditRecord, AuditRecord.action == "gdpr.erase") == []


def test_erase_cancels_an_after_ticket_survey_still_waiting(cli, database_url):
    _console(cli, "grace", "incident new payments P3 Receipts print twice")
    _console(cli, "tom", "incident resolve INC-1")  # payments asks its requesters two hours later
    [waiting] = db_rows(database_url, Survey)
    assert (waiting.kind, waiting.state, waiting.audience) == ("ticket", "scheduled", ["grace"])
    assert cli("gdpr", "erase", "grace").returncode == 0
    [cancelled] = db_rows(database_url, Survey)
    assert cancelled.state == "cancelled" and cancelled.due_at is None

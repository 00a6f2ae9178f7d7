"""app.yaml's survey keys (handlers/core/config.py): services[].ticket_survey and surveys.*; defaults, and every
bad value refused with its path in the file."""
from __future__ import annotations

import pytest
import yaml

from handlers.core.config import SurveyPolicy
from handlers.core.config_catalogue import TicketSurvey
from handlers.core.config_loading import ConfigError, parse_config
from tests.conftest import demo_config


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


def problems_after(mutate) -> list[str]:
    cfg = demo_config()
    mutate(cfg)
    with pytest.raises(ConfigError) as caught:
        parse_config(dump(cfg))
    return caught.value.problems


def parsed_after(mutate):
    cfg = demo_config()
    mutate(cfg)
    return parse_config(dump(cfg))


def svc_index(cfg: dict, sid: str) -> int:
    return next(i for i, s in enumerate(cfg["services"]) if s["id"] == sid)


PAY = svc_index(demo_config(), "payments")
EMAIL = svc_index(demo_config(), "email")


def ticket_survey(cfg: dict, **values) -> None:
    cfg["services"][PAY]["ticket_survey"].update(values)


# ---------------------------------------------------------------------------------------------- the demo

def test_demo_ticket_surveys_and_survey_policy():
    cfg = parse_config(dump(demo_config()))
    pay, email = cfg.service("payments").ticket_survey, cfg.service("email").ticket_survey
    assert (pay.enabled, pay.sample_percent, pay.delay.minutes, pay.delay.business) == (True, 100, 120, False)
    assert (email.enabled, email.sample_percent, email.delay.minutes) == (True, 50, 30)
    assert pay.question == "How satisfied are you with how {ticket} was handled?"
    assert all(s.ticket_survey is None for s in cfg.services if s.id not in ("payments", "email"))
    p = cfg.surveys
    assert (p.min_respondents, p.retention_days, p.comment_retention_days, p.reminder_hours, p.low_score) == \
        (5, 365, 180, 24, 2)


def test_demo_sla_pay_has_a_satisfaction_target_of_80():
    cfg = parse_config(dump(demo_config()))
    (target,) = [t for a in cfg.agreements if a.id == "SLA-PAY" for t in a.targets if t.metric == "satisfaction"]
    assert target.goal == 80 and target.within is None and target.priority is None


# ---------------------------------------------------------------------------------------------- defaults

def test_an_empty_ticket_survey_takes_every_default():
    cfg = parsed_after(lambda c: c["services"][PAY].update(ticket_survey={}))
    ts = cfg.service("payments").ticket_survey
    assert ts == TicketSurvey()
    assert (ts.enabled, ts.sample_percent, ts.delay.minutes, ts.delay.business) == (True, 100, 60, False)
    assert "{ticket}" in ts.question


def test_without_a_surveys_section_the_policy_defaults_apply():
    cfg = parsed_after(lambda c: c.pop("surveys"))
    assert cfg.surveys == SurveyPolicy()
    assert (cfg.surveys.min_respondents, cfg.surveys.retention_days, cfg.surveys.comment_retention_days,
            cfg.surveys.reminder_hours, cfg.surveys.low_score) == (5, 365, None, 24, 2)


@pytest.mark.parametrize("text, minutes", [("30 min", 30), ("2 hours", 120), ("1.5 hours", 90), ("45 minutes", 45),
                                           ("1 h", 60), ("0 min", 0)])
def test_ticket_survey_delays_in_clock_time(text, minutes):
    cfg = parsed_after(lambda c: ticket_survey(c, delay=text))
    delay = cfg.service("payments").ticket_survey.delay
    assert delay.minutes == minutes and not delay.business


def test_a_ticket_survey_can_be_switched_off_and_reworded():
    cfg = parsed_after(lambda c: ticket_survey(c, enabled=False, question="Did {ticket} go well?", sample_percent=12.5))
    ts = cfg.service("payments").ticket_survey
    assert (ts.enabled, ts.question, ts.sample_percent) == (False, "Did {ticket} go well?", 12.5)


def test_comment_retention_may_equal_retention():
    cfg = parsed_after(lambda c: c["surveys"].update(comment_retention_days=365))
    assert cfg.surveys.comment_retention_days == cfg.surveys.retention_days == 365


# ---------------------------------------------------------------------------------------------- refused

def test_a_business_delay_is_refused_with_its_path():
    problems = problems_after(lambda c: ticket_survey(c, delay="2 business hours"))
    assert problems == [f"services[{PAY}].ticket_survey.delay: a survey's delay is clock time, like '2 hours'"]


def test_business_days_are_refused_too():
    problems = problems_after(lambda c: ticket_survey(c, delay="1 business days"))
    assert problems == [f"services[{PAY}].ticket_survey.delay: a survey's delay is clock time, like '2 hours'"]


def test_a_bare_day_delay_is_ambiguous():
    problems = problems_after(lambda c: ticket_survey(c, delay="2 days"))
    assert problems == [f"services[{PAY}].ticket_survey.delay: '2 days' is ambiguous: say '2 business days' "
                        "or '48 hours'"]


@pytest.mark.parametrize("delay", [30, "soon", "2 weeks", ""])
def test_a_delay_without_a_unit_is_refused(delay):
    (problem,) = problems_after(lambda c: ticket_survey(c, delay=delay))
    assert problem.startswith(f"services[{PAY}].ticket_survey.delay: ")
    assert "is not a duration like '30 min'" in problem


@pytest.mark.parametrize("percent, message", [(0, "greater than 0"), (-5, "greater than 0"),
                                              (100.5, "less than or equal to 100"),
                                              (150, "less than or equal to 100")])
def test_sample_percent_must_be_a_share(percent, message):
    (problem,) = problems_after(lambda c: ticket_survey(c, sample_percent=percent))
    assert problem.startswith(f"services[{PAY}].ticket_survey.sample_percent: ")
    assert message in problem


def test_unknown_ticket_survey_keys_are_refused():
    assert problems_after(lambda c: ticket_survey(c, sample=50)) == \
        [f"services[{PAY}].ticket_survey.sample: unknown key"]


def test_ticket_survey_enabled_must_be_a_boolean():
    (problem,) = problems_after(lambda c: ticket_survey(c, enabled="maybe"))
    assert problem.startswith(f"services[{PAY}].ticket_survey.enabled: ")


def test_ticket_survey_on_a_second_service_is_reported_at_its_own_index():
    problems = problems_after(lambda c: c["services"][EMAIL]["ticket_survey"].update(delay="1 business hours"))
    assert problems == [f"services[{EMAIL}].ticket_survey.delay: a survey's delay is clock time, like '2 hours'"]


def test_comment_retention_longer_than_retention_is_refused():
    assert problems_after(lambda c: c["surveys"].update(comment_retention_days=366)) == \
        ["surveys: comment_retention_days cannot be longer than retention_days"]
    assert problems_after(lambda c: c["surveys"].update(retention_days=90)) == \
        ["surveys: comment_retention_days cannot be longer than retention_days"]  # the demo keeps comments 180


@pytest.mark.parametrize("key, value, message", [
    ("min_respondents", 0, "greater than or equal to 1"),
    ("retention_days", 0, "greater than or equal to 1"),
    ("comment_retention_days", 0, "greater than or equal to 1"),
    ("reminder_hours", 0, "greater than 0"),
    ("reminder_hours", -1, "greater than 0"),
    ("low_score", 0, "greater than or equal to 1"),
    ("low_score", 6, "less than or equal to 5"),
    ("min_respondents", "many", "valid integer"),
])
def test_survey_policy_values_are_checked(key, value, message):
    (problem,) = problems_after(lambda c: c["surveys"].update({key: value}))
    assert problem.startswith(f"surveys.{key}: ")
    assert message in problem


def test_unknown_survey_policy_keys_are_refused():
    assert problems_after(lambda c: c["surveys"].update(min_respondent=3)) == ["surveys.min_respondent: unknown key"]


def test_every_survey_problem_is_listed_at_once():
    def break_all(c):
        ticket_survey(c, delay="2 business hours", sample_percent=0)
        c["surveys"].update(low_score=9, min_respondents=0)
    problems = problems_after(break_all)
    assert sorted(p.split(":")[0] for p in problems) == sorted([
        f"services[{PAY}].ticket_survey.delay", f"services[{PAY}].ticket_survey.sample_percent",
        "surveys.low_score", "surveys.min_respondents"])


def test_an_unknown_key_does_not_hide_a_broken_reference():
    def mutate(c):
        c["surveys"]["colour"] = "red"
        c["services"][PAY]["owner"] = "nobody"
    problems = problems_after(mutate)
    assert "surveys.colour: unknown key" in problems
    assert f"services[{PAY}].owner: unknown person 'nobody'" in problems


def test_satisfaction_goal_must_be_a_percentage():
    def mutate(c):
        c["agreements"][0]["targets"][-1]["goal"] = 120
    (problem,) = problems_after(mutate)
    assert problem.startswith("agreements[0].targets[")
    assert ".goal: " in problem and "less than or equal to 100" in problem

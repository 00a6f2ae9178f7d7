"""CSAT, NPS and yes/no arithmetic (handlers/surveys/satisfaction.py): plain functions, checked against sums
worked by hand in each test."""
from __future__ import annotations

import json

import pytest

from handlers.surveys import satisfaction
from handlers.surveys.satisfaction import Results, bar, parse_value, summarise, tally, trend, value_label

# ---------------------------------------------------------------------------------------------- CSAT

def test_csat_is_the_share_of_fours_and_fives():
    # 5, 4, 4 satisfied; 3 and 1 not: 3 of 5 = 60 %
    r = summarise("csat", [5, 4, 4, 3, 1])
    assert r.answers == 5
    assert r.distribution == {1: 1, 2: 0, 3: 1, 4: 2, 5: 1}
    assert r.csat == pytest.approx(60.0)
    assert r.score == r.csat
    assert (r.score_name, r.score_text()) == ("CSAT", "60 %")
    assert r.nps is None and r.yes is None
    assert r.low  # under 80 %


def test_csat_of_exactly_eighty_percent_is_not_low_and_just_under_is():
    assert summarise("csat", [5, 4, 4, 5, 1]).csat == pytest.approx(80.0)
    assert not summarise("csat", [5, 4, 4, 5, 1]).low
    # 7 of 9 = 77.8 %
    r = summarise("csat", [5] * 7 + [3, 3])
    assert r.csat == pytest.approx(700 / 9)
    assert r.low
    assert r.score_text() == "78 %"


def test_csat_rounds_the_headline_but_keeps_the_exact_share():
    r = summarise("csat", [4, 4, 1])  # 2 of 3
    assert r.csat == pytest.approx(200 / 3)
    assert r.score_text() == "67 %"


# ---------------------------------------------------------------------------------------------- NPS

def test_nps_is_promoters_minus_detractors():
    # 10, 10, 9 promoters (3 of 6 = 50 %); 8 passive; 6 and 3 detractors (2 of 6 = 33.3 %): +16.7
    r = summarise("nps", [10, 10, 9, 8, 6, 3])
    assert r.nps == pytest.approx(50 - 200 / 6)
    assert (r.score_name, r.score_text()) == ("NPS", "+17")
    assert not r.low
    assert r.csat is None and r.yes is None
    assert set(r.distribution) == set(range(0, 11))


@pytest.mark.parametrize("values, expected, text", [
    ([10, 9, 10, 9], 100, "+100"),
    ([0, 1, 2, 3, 4, 5, 6], -100, "-100"),
    ([7, 8, 7], 0, "+0"),                      # all passive
    ([10, 6], 0, "+0"),                        # one each
    ([10, 6, 5], 100 / 3 - 200 / 3, "-33"),    # 33.3 - 66.7
    ([9, 7, 7, 7, 7], 20, "+20"),
])
def test_nps_worked_examples(values, expected, text):
    r = summarise("nps", values)
    assert r.nps == pytest.approx(expected)
    assert r.score_text() == text


def test_nps_is_low_only_when_negative():
    assert not summarise("nps", [10, 6]).low      # 0
    assert summarise("nps", [10, 6, 6]).low       # -33


# ---------------------------------------------------------------------------------------------- yes / no

def test_yes_no_is_the_share_of_yes():
    r = summarise("yesno", [1, 1, 0, 1, 0])
    assert r.yes == pytest.approx(60.0)
    assert (r.score_name, r.score_text()) == ("Yes", "60 %")
    assert r.distribution == {1: 3, 0: 2}
    assert r.csat is None and r.nps is None


def test_yes_no_is_low_under_half():
    assert not summarise("yesno", [1, 0]).low
    assert summarise("yesno", [1, 0, 0]).low


# ---------------------------------------------------------------------------------------------- no answers

@pytest.mark.parametrize("scale", ["csat", "nps", "yesno"])
def test_no_answers_means_no_score_and_not_low(scale):
    r = summarise(scale, [])
    assert r.answers == 0
    assert r.score is None
    assert r.score_text() == "—"
    assert not r.low
    assert r.share((1, 2)) is None
    assert all(v == 0 for v in r.distribution.values())
    assert set(r.distribution) == set(satisfaction.SCALE_VALUES[scale])


# ---------------------------------------------------------------------------------------------- response rate

def test_response_rate_is_answers_over_people_asked():
    r = summarise("csat", [5, 4, 3], invited=8)
    assert r.response_rate == pytest.approx(37.5)
    assert summarise("csat", [5], invited=1).response_rate == pytest.approx(100.0)


def test_channel_audiences_have_no_response_rate():
    assert summarise("csat", [5, 4]).response_rate is None
    assert summarise("csat", [5, 4], invited=None).invited is None


# ---------------------------------------------------------------------------------------------- tally

def test_tally_and_summarise_agree():
    values = [5, 5, 4, 2, 2, 2, 1]
    counts = {5: 2, 4: 1, 2: 3, 1: 1}
    assert tally("csat", counts, 9) == summarise("csat", values, 9)
    assert tally("nps", {10: 2, 0: 1}) == summarise("nps", [10, 0, 10])
    assert tally("yesno", {1: 4}) == summarise("yesno", [1, 1, 1, 1])


def test_tally_fills_in_every_value_of_the_scale():
    r = tally("csat", {5: 3})
    assert r.distribution == {1: 0, 2: 0, 3: 0, 4: 0, 5: 3}
    assert r.answers == 3 and r.csat == pytest.approx(100.0)


# ---------------------------------------------------------------------------------------------- stored form

@pytest.mark.parametrize("results", [
    summarise("csat", [5, 4, 1], invited=6),
    summarise("nps", [10, 0, 7]),
    summarise("yesno", [1, 0, 0], invited=3),
    summarise("csat", []),
])
def test_results_survive_a_round_trip_through_json(results):
    stored = json.loads(json.dumps(results.to_dict()))  # as a JSON column gives it back: keys as text
    assert Results.from_dict(stored) == results
    assert Results.from_dict(stored).score == results.score


def test_stored_form_names_the_scale_answers_and_people_asked():
    d = summarise("csat", [5, 4, 1], invited=6).to_dict()
    assert d == {"scale": "csat", "answers": 3, "invited": 6,
                 "distribution": {"1": 1, "2": 0, "3": 0, "4": 1, "5": 1}}


def test_older_stored_results_without_invited_load():
    r = Results.from_dict({"scale": "yesno", "answers": 2, "distribution": {"1": 1, "0": 1}})
    assert r.invited is None and r.yes == pytest.approx(50.0)


# ---------------------------------------------------------------------------------------------- trend

def test_trend_is_the_change_of_the_headline_in_points():
    before, now = summarise("csat", [5, 4, 1, 1, 2]), summarise("csat", [5, 4, 4, 1, 2])  # 40 % → 60 %
    assert trend(now, before) == pytest.approx(20.0)
    assert trend(before, now) == pytest.approx(-20.0)
    assert trend(now, now) == 0


def test_nps_trend_is_the_difference_of_the_two_scores():
    before, now = summarise("nps", [10, 0, 0]), summarise("nps", [10, 10, 0, 8])  # -33.3 → +25
    assert trend(now, before) == pytest.approx(25 + 100 / 3)


@pytest.mark.parametrize("previous", [None, summarise("nps", [10]), summarise("csat", [])])
def test_no_trend_without_a_comparable_previous_score(previous):
    assert trend(summarise("csat", [5]), previous) is None


def test_no_trend_when_the_current_survey_has_no_answers():
    assert trend(summarise("csat", []), summarise("csat", [5])) is None


# ---------------------------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("scale, text, value", [
    ("csat", "1", 1), ("csat", "5", 5), ("csat", " 4 ", 4),
    ("nps", "0", 0), ("nps", "10", 10), ("nps", "7", 7),
    ("yesno", "yes", 1), ("yesno", "Y", 1), ("yesno", "NO", 0), ("yesno", "n", 0),
    ("yesno", "1", 1), ("yesno", "0", 0),
])
def test_answers_as_typed_or_carried_by_a_button(scale, text, value):
    assert parse_value(scale, text) == value


@pytest.mark.parametrize("scale, text, allowed", [
    ("csat", "0", "a number from 1 to 5"), ("csat", "6", "a number from 1 to 5"),
    ("csat", "4.5", "a number from 1 to 5"), ("csat", "four", "a number from 1 to 5"),
    ("csat", "", "a number from 1 to 5"),
    ("nps", "11", "a number from 0 to 10"), ("nps", "-1", "a number from 0 to 10"),
    ("yesno", "maybe", "yes or no"), ("yesno", "2", "yes or no"),
])
def test_answers_off_the_scale_say_what_the_scale_takes(scale, text, allowed):
    with pytest.raises(ValueError) as caught:
        parse_value(scale, text)
    assert f"'{text}' is not an answer on this survey's scale" in str(caught.value)
    assert allowed in str(caught.value)


def test_value_labels():
    assert value_label("csat", 1) == "1 (very dissatisfied)"
    assert value_label("csat", 4) == "4 (satisfied)"
    assert value_label("csat", 5) == "5 (very satisfied)"
    assert value_label("nps", 7) == "7"
    assert (value_label("yesno", 1), value_label("yesno", 0)) == ("yes", "no")


# ---------------------------------------------------------------------------------------------- bars

def test_bars_are_always_as_wide_as_asked():
    assert bar(0, 0) == "░" * 10
    assert bar(5, 5) == "█" * 10
    assert bar(3, 10) == "███" + "░" * 7
    assert bar(1, 3, width=6) == "██░░░░"
    for n in range(0, 8):
        assert len(bar(n, 7)) == 10

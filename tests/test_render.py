"""Replies rendered for Slack (Block Kit), Teams (Adaptive Card 1.4) and the console (plain text)."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot import render
from handlers.core.context import Button, Command, Field, Reply, Section, error_reply
from handlers.core.people import console_actor
from handlers.router import dispatch
from storage.models import OutboxMessage

# Slack's documented limits for the blocks svcbot uses.
MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ID = 255

SPECIAL = ('He said "stop" — it\'s 50% <b>down</b> & <!channel> C:\\temp\\new\n2nd line\t🟡🔴✅ '
           '{{ reply.title }} {% raw %} \u2028end')


def rich_reply(**overrides) -> Reply:
    reply = Reply(
        title="Payments Gateway is now degraded",
        text="Card payments are *slow*; we are on it",
        sections=[
            Section(title="Details", text="Started at 09:12\nOwner paged",
                    fields=[Field("Status", "🟡 *degraded*"), Field("Owner", "Tom Hughes")],
                    buttons=[Button("Acknowledge", "incident ack INC-12", "primary")]),
            Section(text="Second section, no title, no buttons"),
        ],
        buttons=[Button("Subscribe", "subscribe payments", "primary"),
                 Button("Major outage", "service set payments major-outage", "danger"),
                 Button("Help", "help status")],
        footer="Announced to #payments",
        tone="warning",
        private=False,
    )
    for k, v in overrides.items():
        setattr(reply, k, v)
    return reply


def all_buttons(reply: Reply) -> list[Button]:
    return [b for s in reply.sections for b in s.buttons] + list(reply.buttons)


# ---------------------------------------------------------------------------------------------- Slack

def check_block_kit(payload: dict) -> None:
    """The shape and limits Slack enforces on chat.postMessage / response_url payloads."""
    assert isinstance(payload.get("text"), str) and payload["text"].strip(), "a plain text fallback is needed"
    blocks = payload["blocks"]
    assert isinstance(blocks, list) and 1 <= len(blocks) <= MAX_BLOCKS, len(blocks)
    action_ids = []
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 1 <= len(block["text"]["text"]) <= MAX_HEADER, len(block["text"]["text"])
        elif kind == "section":
            assert "text" in block or "fields" in block, f"a section needs text or fields: {block}"
            if "text" in block:
                assert block["text"]["type"] in ("mrkdwn", "plain_text")
                assert 1 <= len(block["text"]["text"]) <= MAX_SECTION_TEXT, len(block["text"]["text"])
            if "fields" in block:
                assert 1 <= len(block["fields"]) <= MAX_FIELDS
                for f in block["fields"]:
                    assert f["type"] in ("mrkdwn", "plain_text")
                    assert 1 <= len(f["text"]) <= MAX_FIELD_TEXT, len(f["text"])
        elif kind == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for e in block["elements"]:
                assert e["type"] == "button"
                assert e["action_id"].startswith("svc_run:") and len(e["action_id"]) <= MAX_ACTION_ID
                assert e["text"]["type"] == "plain_text"
                assert 1 <= len(e["text"]["text"]) <= MAX_BUTTON_TEXT, len(e["text"]["text"])
                assert isinstance(e["value"], str) and len(e["value"]) <= MAX_BUTTON_VALUE
                assert e.get("style", "primary") in ("primary", "danger")
                action_ids.append(e["action_id"])
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10
            for e in block["elements"]:
                assert e["type"] in ("mrkdwn", "plain_text") and 1 <= len(e["text"]) <= MAX_SECTION_TEXT
        else:
            pytest.fail(f"unexpected block type {kind}")
    assert len(action_ids) == len(set(action_ids)), "action_id must be unique within a message"


def slack_buttons(payload: dict) -> list[tuple[str, str, str | None]]:
    return [(e["text"]["text"], e["value"], e.get("style"))
            for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_slack_message_is_block_kit_with_a_text_fallback():
    reply = rich_reply()
    payload = render.slack_message(reply)
    check_block_kit(payload)
    assert payload["text"] == reply.plain()
    header = payload["blocks"][0]
    assert header["type"] == "header" and reply.title in header["text"]["text"]
    assert payload["blocks"][1]["text"]["text"] == reply.text
    sections = [b for b in payload["blocks"] if b["type"] == "section"][1:]
    assert sections[0]["text"]["text"] == "*Details*\n" + reply.sections[0].text
    assert [f["text"] for f in sections[0]["fields"]] == [f"*{f.label}*\n{f.value}" for f in reply.sections[0].fields]
    assert sections[1]["text"]["text"] == reply.sections[1].text
    assert payload["blocks"][-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": reply.footer}]}


def test_slack_buttons_run_the_command_words():
    reply = rich_reply()
    payload = render.slack_message(reply)
    assert slack_buttons(payload) == [(b.label, b.run, b.style) for b in all_buttons(reply)]
    kinds = [b["type"] for b in payload["blocks"]]
    # a section's buttons follow it; the reply's own buttons come after every section, before the footer
    assert kinds == ["header", "section", "section", "actions", "section", "actions", "context"]


def test_slack_section_without_buttons_or_fields():
    payload = render.slack_message(Reply(title="Hello"))
    check_block_kit(payload)
    assert payload == {"text": "Hello", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "Hello", "emoji": True}}]}


def test_slack_error_reply_keeps_its_example():
    reply = error_reply("There is no service 'nowhere'.", "/svc status payments")
    payload = render.slack_message(reply)
    check_block_kit(payload)
    assert "That didn't work" in payload["blocks"][0]["text"]["text"]
    assert payload["blocks"][-1]["elements"][0]["text"] == "Try: /svc status payments"


def test_special_characters_survive_as_json():
    reply = Reply(title=SPECIAL, text=SPECIAL, sections=[Section(title="x", text=SPECIAL,
                                                                 fields=[Field(SPECIAL, SPECIAL)])],
                  buttons=[Button("Go ✅ \"now\"", 'service set payments degraded "a \\ b" <c> & d')],
                  footer=SPECIAL)
    payload = render.slack_message(reply)
    check_block_kit(payload)
    assert json.loads(json.dumps(payload, ensure_ascii=False)) == payload
    assert json.loads(json.dumps(payload)) == payload
    # mrkdwn text is escaped as Slack asks, so "<!channel>" is shown rather than obeyed; plain_text
    # (the header, button labels) and button values are not parsed by Slack and stay as they are.
    escaped = SPECIAL.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert payload["text"] == reply.plain().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert payload["blocks"][0]["text"]["text"] == SPECIAL
    assert payload["blocks"][1]["text"]["text"] == escaped
    assert payload["blocks"][2]["text"]["text"] == "*x*\n" + escaped
    assert payload["blocks"][2]["fields"][0]["text"] == f"*{escaped}*\n{escaped}"
    assert slack_buttons(payload) == [(b.label, b.run, None) for b in reply.buttons]
    assert payload["blocks"][-1]["elements"][0]["text"] == escaped
    assert "<!channel>" not in json.dumps(payload["blocks"][1:], ensure_ascii=False)


def test_slack_long_texts_are_cut_to_slack_limits():
    long_words = " ".join(["word"] * 2000)  # 9999 characters
    reply = Reply(title=long_words, text=long_words,
                  sections=[Section(title="T", text=long_words, fields=[Field("F", long_words)])],
                  buttons=[Button(long_words, "help")], footer=long_words)
    payload = render.slack_message(reply)
    check_block_kit(payload)
    assert payload["blocks"][0]["text"]["text"].startswith("word word")


def test_slack_unbroken_long_texts_are_cut_too():
    blob = "x" * 5000
    payload = render.slack_message(Reply(title=blob, text=blob, sections=[Section(fields=[Field("F", blob)])],
                                         buttons=[Button(blob, "help")]))
    check_block_kit(payload)


@pytest.mark.parametrize("where", ["header", "text", "section", "field", "button"])
def test_slack_texts_just_over_the_limit_are_cut(where):
    reply = Reply(title="t")
    if where == "header":
        reply.title = "h" * (MAX_HEADER + 3)
    elif where == "text":
        reply.text = "s" * (MAX_SECTION_TEXT + 3)
    elif where == "section":
        reply.sections = [Section(text="s" * (MAX_SECTION_TEXT + 3))]
    elif where == "field":
        reply.sections = [Section(fields=[Field("F", "v" * (MAX_FIELD_TEXT - 3))])]  # "*F*\n" makes it +1
    else:
        reply.buttons = [Button("b" * (MAX_BUTTON_TEXT + 3), "help")]
    check_block_kit(render.slack_message(reply))


def test_slack_many_sections_stay_within_fifty_blocks():
    reply = Reply(title="Many", text="intro", sections=[Section(text=f"line {i}") for i in range(80)],
                  buttons=[Button("Help", "help")], footer="end")
    payload = render.slack_message(reply)
    check_block_kit(payload)
    assert payload["blocks"][-1]["type"] == "context"


def test_slack_many_sections_with_buttons_stay_within_fifty_blocks():
    reply = Reply(title="Surveys", text="intro",
                  sections=[Section(text=f"survey {i}", buttons=[Button("Rate", f"survey results SRV-{i}")])
                            for i in range(30)], footer="end")
    check_block_kit(render.slack_message(reply))


def test_slack_fields_are_at_most_ten_per_section():
    reply = Reply(title="Fields", sections=[Section(text="many", fields=[Field(f"L{i}", f"v{i}") for i in range(14)])])
    payload = render.slack_message(reply)
    check_block_kit(payload)
    assert [f["text"] for f in payload["blocks"][1]["fields"]] == [f"*L{i}*\nv{i}" for i in range(10)]


def test_slack_fields_and_buttons_over_the_limits_go_on_in_further_blocks(caplog):
    fields = [Field(f"L{i}", f"v{i}") for i in range(23)]
    buttons = [Button(f"B{i}", f"survey answer SRV-1 {i}") for i in range(60)]
    reply = Reply(title="Many", sections=[Section(text="intro", fields=fields, buttons=buttons)])
    with caplog.at_level("INFO", logger="svcbot"):
        payload = render.slack_message(reply)
    check_block_kit(payload)
    blocks = payload["blocks"][1:]
    assert [(b["type"], len(b.get("fields") or b.get("elements"))) for b in blocks] == [
        ("section", 10), ("section", 10), ("section", 3), ("actions", 25), ("actions", 25), ("actions", 10)]
    assert blocks[0]["text"]["text"] == "intro" and "text" not in blocks[1]
    assert [f["text"] for b in blocks[:3] for f in b["fields"]] == [f"*L{i}*\nv{i}" for i in range(23)]
    assert [e["value"] for b in blocks[3:] for e in b["elements"]] == [b.run for b in buttons]  # none lost
    assert "23 fields in one section block, split over 3" in caplog.text
    assert "60 elements in one actions block, split over 3" in caplog.text


def test_slack_section_with_only_buttons_is_valid():
    reply = Reply(title="Rate us", sections=[Section(buttons=[Button(str(i), f"survey answer SRV-1 {i}")
                                                             for i in range(1, 6)])])
    check_block_kit(render.slack_message(reply))


# ---------------------------------------------------------------------------------------------- Teams

def card_actions(card: dict) -> list[dict]:
    nested = [a for el in card["body"] if el["type"] == "ActionSet" for a in el["actions"]]
    return nested + card["actions"]


def check_adaptive_card(card: dict) -> None:
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert isinstance(card["fallbackText"], str) and card["fallbackText"]
    for el in card["body"]:
        assert el["type"] in ("TextBlock", "FactSet", "ActionSet")
        if el["type"] == "TextBlock":
            assert isinstance(el["text"], str) and el["wrap"] is True
        if el["type"] == "FactSet":
            assert all(set(f) == {"title", "value"} for f in el["facts"])
    for a in card_actions(card):
        assert a["type"] == "Action.Execute" and a["verb"] == "svc"
        assert set(a["data"]) == {"run"} and isinstance(a["data"]["run"], str)
        assert a.get("style", "default") in ("default", "positive", "destructive")


def test_teams_card_is_an_adaptive_card_1_4_with_execute_buttons():
    reply = rich_reply()
    card = render.teams_card(reply)
    check_adaptive_card(card)
    styles = {"primary": "positive", "danger": "destructive", None: None}
    assert [(a["title"], a["data"], a.get("style")) for a in card_actions(card)] == [
        (b.label, {"run": b.run}, styles[b.style]) for b in all_buttons(reply)]
    assert card["fallbackText"] == reply.plain()
    texts = [el["text"] for el in card["body"] if el["type"] == "TextBlock"]
    assert texts[0] == reply.title
    assert texts[1] == "Card payments are **slow**; we are on it"
    assert "Details" in texts and reply.sections[0].text in texts and reply.sections[1].text in texts
    assert texts[-1] == reply.footer
    [facts] = [el["facts"] for el in card["body"] if el["type"] == "FactSet"]
    assert facts == [{"title": "Status", "value": "🟡 **degraded**"}, {"title": "Owner", "value": "Tom Hughes"}]


@pytest.mark.parametrize("tone, colour", [("error", "Attention"), ("warning", "Warning"), ("ok", "Good"),
                                          ("info", "Default")])
def test_teams_title_colour_follows_the_tone(tone, colour):
    card = render.teams_card(Reply(title="Title", tone=tone))
    check_adaptive_card(card)
    assert card["body"][0]["color"] == colour and card["body"][0]["weight"] == "Bolder"


@pytest.mark.parametrize("slack, teams", [
    ("*bold*", "**bold**"),
    ("a *Payments Gateway* (`payments`) b", "a **Payments Gateway** (payments) b"),
    ("*one* and *two*", "**one** and **two**"),
    ("already **bold**", "already **bold**"),
    ("2*3*4", "2*3*4"),
    ("a * b * c", "a * b * c"),
    ("* list item", "* list item"),
    ("*not\nacross lines*", "*not\nacross lines*"),
])
def test_teams_turns_slack_bold_into_markdown_bold(slack, teams):
    card = render.teams_card(Reply(title="t", text=slack))
    assert card["body"][1]["text"] == teams


def test_teams_card_without_buttons_has_no_actions():
    card = render.teams_card(Reply(title="Plain"))
    check_adaptive_card(card)
    assert card["actions"] == [] and [el["type"] for el in card["body"]] == ["TextBlock"]


def test_teams_special_characters_survive_as_json():
    reply = Reply(title=SPECIAL, text=SPECIAL, sections=[Section(title=SPECIAL, text=SPECIAL,
                                                                 fields=[Field(SPECIAL, SPECIAL)])],
                  buttons=[Button("Go ✅ \"now\"", 'service set payments degraded "a \\ b" <c> & d')],
                  footer=SPECIAL)
    card = render.teams_card(reply)
    check_adaptive_card(card)
    assert json.loads(json.dumps(card)) == card
    texts = [el["text"] for el in card["body"] if el["type"] == "TextBlock"]
    assert texts == [SPECIAL] * 5
    assert card["body"][4]["facts"] == [{"title": SPECIAL, "value": SPECIAL}]
    assert card["actions"][0]["data"] == {"run": reply.buttons[0].run}
    assert card["actions"][0]["title"] == reply.buttons[0].label
    assert card["fallbackText"] == reply.plain()


# ---------------------------------------------------------------------------------------------- text

def test_text_rendering_for_the_console():
    reply = rich_reply()
    lines = render.text(reply).splitlines()
    assert lines[0] == "Payments Gateway is now degraded"
    assert lines[1] == "Card payments are slow; we are on it"  # *bold* marks go in plain text
    assert lines[2] == "" and lines[3] == "Details"
    assert lines[4:6] == ["  Started at 09:12", "  Owner paged"]
    status, owner = lines[6:8]
    assert status.split() == ["Status:", "🟡", "degraded"] and owner.split() == ["Owner:", "Tom", "Hughes"]
    assert status.index("🟡") == owner.index("Tom"), "field values line up"
    assert lines[8] == "  [Acknowledge] → incident ack INC-12"
    assert lines[9] == "  Second section, no title, no buttons"
    assert lines[10] == ("[Subscribe] → subscribe payments   [Major outage] → service set payments major-outage"
                         "   [Help] → help status")
    assert lines[11] == "(Announced to #payments)"
    assert len(lines) == 12


def test_text_rendering_of_an_error_shows_the_example():
    out = render.text(error_reply("A quote is not closed.", 'service set payments degraded "Card payments"'))
    assert out.splitlines() == ["That didn't work", "A quote is not closed.",
                                '(Try: service set payments degraded "Card payments")']


def test_text_rendering_keeps_special_characters():
    out = render.text(Reply(title="t", text=SPECIAL))
    assert out == "t\n" + SPECIAL


# ---------------------------------------------------------------------------------------------- Reply

def test_reply_round_trips_through_a_dict_and_json():
    reply = rich_reply(title=SPECIAL)
    data = reply.to_dict()
    assert json.loads(json.dumps(data)) == data  # stored as JSON in the outbox
    again = Reply.from_dict(json.loads(json.dumps(data)))
    assert again == reply
    assert isinstance(again.sections[0], Section) and isinstance(again.sections[0].fields[0], Field)
    assert isinstance(again.sections[0].buttons[0], Button) and isinstance(again.buttons[0], Button)
    assert render.slack_message(again) == render.slack_message(reply)
    assert render.teams_card(again) == render.teams_card(reply)
    assert render.text(again) == render.text(reply)
    assert data == reply.to_dict(), "from_dict must not change what it was given"


def test_reply_from_a_minimal_dict_takes_the_defaults():
    reply = Reply.from_dict({"title": "Hi"})
    assert reply == Reply(title="Hi")
    assert reply.tone == "info" and reply.private is True and reply.sections == [] and reply.buttons == []


def test_reply_plain_is_the_one_line_fallback():
    assert Reply(title="A").plain() == "A"
    assert Reply(title="A", text="b").plain() == "A: b"


# ---------------------------------------------------------------------------------------------- real replies

@pytest.fixture
def ask(runtime):
    def ask(text: str, person: str = "tom") -> Reply:
        actor = console_actor(runtime.ctx, person)
        reply, _ = dispatch(runtime.ctx, Command(actor=actor, text=text))
        return reply
    return ask


@pytest.mark.parametrize("words, person", [
    ("status", "tom"), ("status payments", "tom"), ("help", "tom"), ("help service", "tom"),
    ("service set payments degraded \"slow <cards> & 'wallets'\"", "tom"),
    ("service set payments major-outage", "meera"), ("frobnicate", "tom"), ('status "payments', "tom"),
])
def test_every_real_reply_renders_on_every_surface(ask, words, person):
    reply = ask(words, person)
    check_block_kit(render.slack_message(reply))
    check_adaptive_card(render.teams_card(reply))
    out = render.text(reply)
    assert out.startswith(reply.title.replace("*", "")) and "{{" not in out and "{%" not in out


def test_queued_announcement_renders_from_the_outbox(runtime, ask):
    ask("subscribe payments", "priya")
    ask('service set payments degraded "Card payments are slow"', "tom")
    with runtime.ctx.sessions() as s:
        messages = [row.message for row in s.scalars(select(OutboxMessage))]
    assert messages
    for data in messages:
        reply = Reply.from_dict(data)
        payload = render.slack_message(reply)
        check_block_kit(payload)
        assert "Card payments are slow" in json.dumps(payload, ensure_ascii=False)
        assert ("Subscribe", "subscribe payments", None) in slack_buttons(payload)
        card = render.teams_card(reply)
        check_adaptive_card(card)
        assert {"run": "subscribe payments"} in [a["data"] for a in card_actions(card)]


def test_a_reply_rendered_again_is_rendered_from_what_it_says_now():
    """Rendering is kept by what a reply says: asked again, the same message, as a new object each time;
    changed (even the same object), the new content."""
    reply = rich_reply()
    first = render.slack_message(reply)
    first["blocks"].clear()  # what a caller does with its copy is its own business
    again = render.slack_message(reply)
    assert again == render.slack_message(rich_reply()) and again["blocks"]
    reply.sections[0].fields[0].value = "🔴 *major-outage*"
    reply.footer = "Changed after it was first rendered"
    changed = render.slack_message(reply)
    assert "major-outage" in json.dumps(changed, ensure_ascii=False)
    assert changed["blocks"][-1]["elements"][0]["text"] == "Changed after it was first rendered"
    assert render.teams_card(reply) != render.teams_card(rich_reply())
    assert "Changed after it was first rendered" in render.text(reply)


def test_a_deployment_template_applies_to_a_reply_rendered_before_it(tmp_path):
    reply = Reply(title="Everything is fine", text="Nothing to report")
    assert render.slack_message(reply)["blocks"][0]["type"] == "header"
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "message.json.j2").write_text(
        '{"text": {{ reply.title | tojson }}, "blocks": [{"type": "section", "text": {"type": "mrkdwn", '
        '"text": {{ ("Ours: " ~ reply.text) | tojson }}}}]}')
    try:
        render.use_templates(str(tmp_path))
        assert render.slack_message(reply)["blocks"] == [
            {"type": "section", "text": {"type": "mrkdwn", "text": "Ours: Nothing to report"}}]
    finally:
        render.use_templates(None)
    assert render.slack_message(reply)["blocks"][0]["type"] == "header"

"""INC-N, CHG-N and SRV-N written in a channel whose ``channels`` entry says ``unfurl: true``: answered in
the message's thread with a one-line summary and a button to open it, at most once per reference per
thread (the thread and reference make the delivery key, so a second mention or a retried event does
nothing). Off unless a channel asks for it.
"""
from __future__ import annotations

import re

from sqlalchemy import func, select

from handlers.changes.record import votes
from handlers.core.context import Actor, AlreadyHandled, Button, Command, Context, Reply
from handlers.surveys.record import when_text
from storage.models import Change, SlaClock, Survey, SurveyAnswer, Ticket

REFERENCE = re.compile(r"(?<![\w-])(INC|CHG|SRV)-(\d{1,9})(?!\w)", re.IGNORECASE)
MOST = 5  # references summarised from one message; a pasted list is not answered line by line


def wanted(ctx: Context, platform: str, address: str | None, text: str) -> bool:
    """Whether a message here may be answered at all: the channel asks for it and a reference is in it."""
    return bool(address) and any(getattr(t, platform) == address and t.unfurl for t in ctx.config.channels.values()) \
        and REFERENCE.search(text or "") is not None


def summarise(ctx: Context, actor: Actor, platform: str, address: str, thread: str, text: str) -> int:
    """Queue a summary of each reference in ``text`` not yet summarised in this thread; returns how many."""
    if not wanted(ctx, platform, address, text):
        return 0
    found = list(dict.fromkeys((m[1].upper(), int(m[2])) for m in REFERENCE.finditer(text)))[:MOST]
    done = 0
    for kind, number in found:
        name = f"{kind}-{number}"
        key = f"unfurl:{platform}:{address}:{thread}:{name}"
        with ctx.sessions() as s:
            reply = summary(ctx, s, kind, number, actor.timezone)
        if reply is None:  # no such record: nothing to say
            continue
        try:
            with ctx.change(Command(actor=actor, text=name, delivery_key=key, via="text")) as work:
                work.send(platform, "channel", address, reply, key, name, thread_id=thread)
                work.audit("reference.summary", name, channel=address)
                done += 1
        except AlreadyHandled:
            continue
    return done


def summary(ctx: Context, session, kind: str, number: int, zone: str) -> Reply | None:
    if kind == "INC":
        ticket = session.get(Ticket, number)
        if ticket is None:
            return None
        due = session.scalar(select(func.min(SlaClock.due_at)).where(SlaClock.ticket_id == number,
                                                                     SlaClock.state == "running"))
        clocks = f", next clock due {when_text(due, zone)}" if due else ""
        return _line(f"INC-{number} {ticket.priority} {ticket.service_id} · {ticket.title} — {ticket.state}{clocks}",
                     f"incident show INC-{number}")
    if kind == "CHG":
        change = session.get(Change, number)
        if change is None:
            return None
        approvals = sum(1 for v in votes(session, change) if v.decision == "approve")
        said = f", {approvals} of {change.approvals_needed} approvals" if change.state == "awaiting-approval" else ""
        return _line(f"CHG-{number} {change.title} — {change.state}{said}", f"change show CHG-{number}")
    survey = session.get(Survey, number)
    if survey is None:
        return None
    answers = session.scalar(select(func.count()).select_from(SurveyAnswer).where(SurveyAnswer.survey_id == number))
    until = f", closes {when_text(survey.closes_at, zone)}" if survey.state == "open" else ""
    return _line(f"SRV-{number} “{survey.question}” — {survey.state}{until}, {answers} answers",
                 f"survey results SRV-{number}")


def _line(text: str, run: str) -> Reply:
    return Reply(title=text, buttons=[Button("Open", run)], private=False)

"""``supplier …``: the suppliers, a supplier's scorecard for a month, and claiming or waiving its credits."""
from __future__ import annotations

import re
from decimal import Decimal

from sqlalchemy import select

from handlers.core.config_commercial import money_text
from handlers.core.context import Command, Context, Field, Refused, Reply, Section, UserError
from handlers.core.months import is_month_word, month_label, resolve_month
from handlers.sla import breaches
from handlers.suppliers import credits, scorecard
from handlers.suppliers.scorecard import EXAMPLE, Scorecard
from storage.models import CreditDecision

CLAIM_EXAMPLE = "supplier claim cardlink last-month note=\"Credit note CN-2291 requested\""
NOTE_LIMIT = 1000
SHOWN_IN_CHAT = 10


def supplier_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else "list"
    if verb == "list":
        if len(args) > 2 or (len(args) == 2 and not is_month_word(args[1])):
            raise UserError("Use `supplier list [MONTH]`.", "supplier list")
        return _list(ctx, args[1] if len(args) == 2 else None)
    if verb in ("claim", "waive"):
        return _decide(ctx, cmd, verb, args[1:])
    if len(args) > 2 or (len(args) == 2 and not is_month_word(args[1])):
        raise UserError("Use `supplier SUPPLIER [MONTH]`; a month is YYYY-MM, last-month or this-month.", EXAMPLE)
    with ctx.reader() as session:
        card = scorecard.scorecard(ctx, session, args[0], args[1] if len(args) == 2 else None)
    return scorecard_reply(card)


def _list(ctx: Context, month: str | None) -> Reply:
    with ctx.reader() as session:
        rows = scorecard.supplier_list(ctx, session, month)
    if not rows:
        return Reply(title="No suppliers in app.yaml", text="Suppliers are groups of kind supplier.")
    lines = []
    for r in rows:
        due = "; ".join(f"{c['agreement']} {money_text(Decimal(c['due']), c['currency'])} {c['status']}"
                        for c in r["credits"])
        lines.append(f"*{r['supplier']}* {r['name']}" + (f" ({r['location']})" if r["location"] else "")
                     + f" — contracts: {', '.join(r['contracts']) or 'none'}; {r['breaches']} breaches; "
                     f"{r['waiting_now']} waiting now" + (f"; credits {due}" if due else ""))
    return Reply(title=f"Suppliers, {month_label(rows[0]['month'])}", text="\n".join(lines),
                 footer="`supplier SUPPLIER [MONTH]` for one supplier's scorecard")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h"


def credit_lines(s: credits.CreditStatement) -> str:
    lines = [f"{line.target}: {line.rule} — {line.working} → {money_text(line.amount, s.currency)}"
             for line in s.lines]
    if s.cap is not None:
        lines.append(f"Cap {money_text(s.cap, s.currency)}" + (f": {money_text(s.before_cap, s.currency)} capped"
                                                                 if s.capped else ""))
    if s.decision:
        d = s.decision
        changed = "" if d.amount == s.due else f" (then {money_text(d.amount, d.currency)}; measured again since)"
        lines.append(f"{d.status.capitalize()} by {d.by_name} on {d.at:%Y-%m-%d}{changed}: {d.note}")
    return "\n".join(lines)


def scorecard_reply(card: Scorecard) -> Reply:
    sections = []
    targets = [f"{'✅' if t.ok else '❌'} {t.agreement} {t.metric} {t.priority}: {t.achieved:.1f} % "
               f"({t.met} of {t.measured} met)" + (f", agreed {t.goal:g} %" if t.goal is not None else "")
               for t in card.targets]
    sections.append(Section(title="Agreed against achieved", text="\n".join(targets)
                            or f"No UC clock of {', '.join(card.contracts) or 'a contract'} was decided this month."))
    lines = [f"INC-{b.ticket_id} {b.priority} {b.service} · {b.agreement} {b.metric}: used "
             f"{breaches.human(b.used_seconds)} of {breaches.human(b.target_seconds)}"
             + (" (still running)" if b.running else "") for b in card.breaches]
    if len(lines) > SHOWN_IN_CHAT:
        lines = lines[:SHOWN_IN_CHAT] + [f"… and {len(lines) - SHOWN_IN_CHAT} more in `svcbot supplier-pack`"]
    sections.append(Section(title=f"Breaches: {len(card.breaches)}", text="\n".join(lines) or "None this month."))
    waits = [f"INC-{w.ticket_id} {w.priority} {w.service}: since {w.since:%Y-%m-%d %H:%M} UTC, "
             f"{breaches.human(w.waited_seconds)}" for w in card.still_waiting[:SHOWN_IN_CHAT]]
    if len(card.still_waiting) > SHOWN_IN_CHAT:
        waits.append(f"… and {len(card.still_waiting) - SHOWN_IN_CHAT} more")
    sections.append(Section(
        title="Waiting on the supplier", text="\n".join(waits),
        fields=[Field("Waited this month", f"{_hours(card.waited_seconds)} on {card.waited_tickets} "
                                                     f"ticket{'s' * (card.waited_tickets != 1)}"),
                Field("Still waiting" + (" at month end" if card.complete else " now"), str(len(card.still_waiting)))]))
    sections.append(Section(title="Satisfaction of tickets it touched", text=(
        f"CSAT {card.csat:.1f} % ({card.satisfied} of {card.answers} satisfied)" if card.answers
        else "No after-ticket answers this month about tickets that waited on it.")))
    for s in card.credits:
        sections.append(Section(title=f"Service credits, {s.agreement}: {credits.summary(s)}",
                                text=credit_lines(s),
                                fields=[Field("Monthly charge", money_text(s.charge, s.currency)),
                                        Field("Status", s.decision.status if s.decision else "not decided")]))
    sections.append(Section(title="Six months", text="\n".join(
        f"{m.label}: clocks {m.clocks_met}/{m.clocks} met, {m.breaches} breaches, waited {_hours(m.waited_seconds)}"
        + (f", credits {money_text(m.credits_due, m.currency)}" if m.credits_due is not None else "")
        for m in card.trend)))
    where = f" · {card.location}" if card.location else ""
    return Reply(title=f"Supplier scorecard: {card.name}{where}, {card.month_name}"
                       + ("" if card.complete else " (so far)"), sections=sections,
                 footer=f"Months run in {card.timezone} time; waiting is clock time. Credits: {credits.ROUNDING}. "
                        "`svcbot supplier-pack` exports it as HTML and PDF.")


# ---- claim and waive ---------------------------------------------------------------------------------------

# The note: what follows "supplier claim|waive SUPPLIER MONTH", as typed (note="…" or plain words).
NOTE_TEXT = re.compile(r'\bsupplier\s+(?:claim|waive)\s+(?:"[^"]*"|\S+)\s+\S+\s*(.*)\Z', re.IGNORECASE | re.DOTALL)


def _note(typed: str) -> str:
    m = NOTE_TEXT.search(typed.replace("“", '"').replace("”", '"'))
    text = m[1].strip() if m else ""
    if text.lower().startswith("note="):
        text = text[5:].strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1].strip()
    return text


def _decide(ctx: Context, cmd: Command, verb: str, words: list[str]) -> Reply:
    if len(words) < 2:
        raise UserError(f"Say the supplier, the month and a note: `supplier {verb} SUPPLIER YYYY-MM note=…`.",
                        CLAIM_EXAMPLE.replace("claim", verb))
    group = scorecard.find_supplier(ctx, words[0], CLAIM_EXAMPLE)
    month = resolve_month(words[1], ctx.now(), ctx.config.bot.timezone, CLAIM_EXAMPLE)
    note = _note(cmd.text)
    if not note:
        raise UserError("Say why in a note: the credit note's reference, or why the credits are waived.",
                        CLAIM_EXAMPLE.replace("claim", verb))
    if len(note) > NOTE_LIMIT:
        raise UserError(f"Keep the note under {NOTE_LIMIT} characters (it has {len(note)}).", CLAIM_EXAMPLE)
    if cmd.actor.person_id not in ctx.config.roles.service_managers:
        raise Refused(f"Only a service manager can {verb} {group.name}'s service credits.")
    period = scorecard.month_period(ctx, month)
    if period.end > ctx.now():
        raise UserError(f"{period.name} is not over yet; credits are {verb}ed for a month that has ended.",
                        CLAIM_EXAMPLE)
    if not credits.contracts_with_terms(ctx, group.id):
        raise UserError(f"{group.name} has no contract with commercial terms in app.yaml "
                        "(agreements[].commercial of a UC).", EXAMPLE)
    status = "claimed" if verb == "claim" else "waived"
    changed = []
    with ctx.change(cmd) as work:
        for s in credits.month_statements(ctx, work.session, period, month, group.id):
            if s.decision and s.decision.status == status and s.decision.amount == s.due and s.decision.note == note:
                continue  # the same decision again changes nothing
            row = work.session.scalar(select(CreditDecision).where(CreditDecision.agreement_id == s.agreement,
                                                                   CreditDecision.month == month))
            before = {"status": row.status, "amount": row.amount, "note": row.note} if row else None
            if row is None:
                row = CreditDecision(supplier=group.id, agreement_id=s.agreement, month=month)
                work.session.add(row)
            row.status, row.amount, row.currency, row.note = status, str(s.due), s.currency, note
            row.decided_by, row.decided_at = cmd.actor.person_id, work.now
            work.audit(f"supplier.credits.{verb}", f"credits:{s.agreement}:{month}", supplier=group.id,
                       amount=str(s.due), currency=s.currency, note=note, replaces=before)
            changed.append(s)
    if not changed:
        return Reply(title=f"Already {status}: {group.name}, {period.name}", tone="ok",
                     text="Nothing changed: the credits were already marked so, with the same amount and note.")
    return Reply(title=f"Credits {status}: {group.name}, {period.name}", tone="ok",
                 text="\n".join(f"{s.agreement}: {money_text(s.due, s.currency)} {status} — {note}" for s in changed),
                 footer="Recorded in the audit log; shown on the scorecard and in the monthly report.")

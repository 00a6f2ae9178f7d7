"""The ``problem`` word: new, list, show, link, unlink, known-error, fix, suggest."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from handlers.core.context import Button, Command, Context, Field, Refused, Reply, Section, UserError, unknown_word
from handlers.core.words import after_verb, pairs
from handlers.knowledge.articles import listed
from handlers.problems import known_errors, record, suggestions
from handlers.problems.record import RECURRENCE, STATES, number
from handlers.sla.tickets import find_ticket
from storage.models import Change, Problem, ProblemIncident

NEW_EXAMPLE = 'problem new title="VPN drops every 30 minutes" services=vpn owner=sanne'
LINK_EXAMPLE = "problem link PRB-3 INC-12 INC-14"
KNOWN_EXAMPLE = 'problem known-error PRB-3 workaround="Reconnect with the TCP profile" cause="UDP times out"'
FIX_EXAMPLE = "problem fix PRB-3 CHG-12"
NEW_FIELDS = ("title", "services", "owner", "symptom")
KNOWN_FIELDS = ("workaround", "symptom", "cause")
VERBS = ("new", "list", "show", "link", "unlink", "known-error", "fix", "suggest")
SHOWN = 30
# A fix is a change that was carried out: closed or under review after it, and not failed.
FIXING_STATES = ("closed", "review")
ICON = {"open": "🔎", "known-error": "🩹", "resolved": "✅"}


def problem_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else "list"
    rest = args[1:]
    if verb == "new":
        return new(ctx, cmd, pairs(after_verb(cmd.text, "new"), NEW_EXAMPLE))
    if verb == "list":
        return list_reply(ctx, rest)
    if verb == "show":
        with ctx.reader() as s:
            return show_reply(ctx, s, record.find(s, rest[0] if rest else "", "problem show PRB-3"))
    if verb in ("link", "unlink"):
        if len(rest) < 2:
            raise UserError("Say the problem and one or more incidents.", LINK_EXAMPLE.replace("link", verb, 1))
        return link(ctx, cmd, rest[0], rest[1:], unlinking=verb == "unlink")
    if verb == "known-error":
        if not rest:
            raise UserError("Say which problem, and its workaround.", KNOWN_EXAMPLE)
        return known_error(ctx, cmd, rest[0], pairs(after_verb(cmd.text, r"known-error\s+\S+"), KNOWN_EXAMPLE))
    if verb == "fix":
        if len(rest) != 2:
            raise UserError("Say the problem and the change that fixed it.", FIX_EXAMPLE)
        return fix(ctx, cmd, rest[0], rest[1])
    if verb == "suggest":
        told = suggestions.suggest(ctx, cmd.actor)
        return Reply(title=f"{told} cluster{'s' * (told != 1)} of similar incidents told to their service owners"
                     if told else "No new clusters of similar incidents",
                     text=f"Three or more unlinked incidents of one service in {suggestions.WINDOW.days} days whose "
                          "titles match; each incident is suggested once.")
    raise unknown_word("problem", args[0], rest, VERBS, "problem list")


def _unknown_fields(values: dict, known: tuple[str, ...], example: str) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(f"Unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
                        f"Fields: {', '.join(known)}.", example)


def new(ctx: Context, cmd: Command, values: dict, *, source: str = "chat") -> Reply:
    _unknown_fields(values, NEW_FIELDS, NEW_EXAMPLE)
    errors = []
    title = " ".join((values.get("title") or "").split())
    if not title:
        errors.append("title: say what goes wrong, in a few words")
    elif len(title) > 300:
        errors.append("title: keep it under 300 characters")
    services = []
    for key in listed(values.get("services")):
        svc = ctx.config.service(key)
        if svc is None:
            errors.append(f"services: unknown service '{key}'")
        else:
            services.append(svc.id)
    if not services and not any(e.startswith("services") for e in errors):
        errors.append("services: name the services it hurts, like services=vpn")
    owner = (values.get("owner") or cmd.actor.person_id).strip()
    if ctx.config.person(owner) is None:
        errors.append(f"owner: unknown person '{owner}'")
    if errors:
        raise UserError("; ".join(errors) + ".", NEW_EXAMPLE)
    services = list(dict.fromkeys(services))
    if not record.may_run(ctx, cmd.actor.person_id, services):
        raise Refused(f"Only the owners of {ctx.config.service_names(services)} or a service manager can "
                             "open a problem on them.")
    with ctx.change(cmd) as work:
        problem = Problem(source=source, title=title, services=services, owner=owner, state="open",
                          symptom=(values.get("symptom") or "").strip(), workaround="", cause="", reopened=0,
                          created_by=cmd.actor.person_id, created_at=work.now, updated_at=work.now)
        work.session.add(problem)
        work.session.flush()
        work.audit("problem.new", number(problem), title=title, services=services, owner=owner)
        if owner != cmd.actor.person_id:
            work.message_person(owner, Reply(title=f"{number(problem)} is yours: {title}",
                                             text=ctx.config.service_names(services),
                                             buttons=[Button("Show", f"problem show {number(problem)}")]),
                                f"problem:{problem.id}:owner", number(problem))
        reply = show_reply(ctx, work.session, problem)
    reply.title, reply.tone = f"{number(problem)} opened: {title}", "ok"
    reply.footer = f"Link its incidents: problem link {number(problem)} INC-12 INC-14"
    return reply


def link(ctx: Context, cmd: Command, key: str, incidents: list[str], unlinking: bool = False) -> Reply:
    example = LINK_EXAMPLE.replace("link", "unlink", 1) if unlinking else LINK_EXAMPLE
    with ctx.change(cmd) as work:
        problem = record.find(work.session, key, example, lock=True)
        record.refuse_unless_runs(ctx, cmd.actor, problem,
                                  "unlink incidents from" if unlinking else "link incidents to")
        tickets = list(dict.fromkeys(find_ticket(work, i, example) for i in incidents))
        lines = []
        if unlinking:
            for t in tickets:
                done = record.unlink(work, problem, t.id)
                lines.append(f"INC-{t.id} {'unlinked' if done else 'was not one of its incidents'}")
        else:
            for t in tickets:
                linked = record.link(work, problem, t, cmd.via)
                told = known_errors.on_link(ctx, work, problem, t) if linked.new else False
                lines.append(f"INC-{t.id} " + ("linked" if linked.new else "was already linked")
                             + (f"; {number(problem)} was resolved, and is {problem.state} again: its owner is told"
                                if linked.reopened else "")
                             + ("; the workaround was announced on it" if told else ""))
        reply = show_reply(ctx, work.session, problem)
    reply.title = f"{number(problem)}: " + "; ".join(lines)
    reply.tone = "ok"
    return reply


def known_error(ctx: Context, cmd: Command, key: str, values: dict) -> Reply:
    _unknown_fields(values, KNOWN_FIELDS, KNOWN_EXAMPLE)
    workaround = (values.get("workaround") or "").replace("\\n", "\n").strip()
    with ctx.change(cmd) as work:
        problem = record.find(work.session, key, KNOWN_EXAMPLE, lock=True)
        record.refuse_unless_runs(ctx, cmd.actor, problem, "record the known error of")
        if problem.state == "resolved":
            raise UserError(f"{number(problem)} is resolved (by CHG-{problem.fix_change_id}); a known error is for a "
                            "problem still with us.", f"problem show {number(problem)}")
        if not workaround and not problem.workaround:
            raise UserError("A known error needs its workaround: what people do until the fix.", KNOWN_EXAMPLE)
        before = (problem.workaround, problem.symptom, problem.cause)
        problem.workaround = workaround or problem.workaround
        problem.symptom = (values.get("symptom") or problem.symptom).strip()
        problem.cause = (values.get("cause") or problem.cause).strip()
        article = known_errors.publish(ctx, work, problem)
        changed = before != (problem.workaround, problem.symptom, problem.cause)
        if problem.state == "open":
            record.move(work, problem, "known-error", article=f"KB-{article.id}")
        elif changed:
            problem.updated_at = work.now
            work.audit("problem.known_error_edited", number(problem), article=f"KB-{article.id}")
        told = known_errors.tell_open_incidents(ctx, work, problem)
        reply = show_reply(ctx, work.session, problem)
    reply.title = f"{number(problem)} is a known error; published as KB-{article.id}"
    reply.tone = "ok"
    reply.footer = (f"The workaround was announced on {told} open incident{'s' * (told != 1)}; " if told else "") \
        + "every incident linked from now on hears it too"
    return reply


def fix(ctx: Context, cmd: Command, key: str, change_key: str) -> Reply:
    m = re.fullmatch(r"CHG-?(\d{1,9})", change_key.strip(), re.IGNORECASE)
    if not m:
        raise UserError(f"'{change_key}' is not a change, like CHG-12.", FIX_EXAMPLE)
    with ctx.change(cmd) as work:
        problem = record.find(work.session, key, FIX_EXAMPLE, lock=True)
        record.refuse_unless_runs(ctx, cmd.actor, problem, "resolve")
        change = work.session.get(Change, int(m[1]))
        if change is None:
            raise UserError(f"There is no CHG-{m[1]}.", "change list all")
        if problem.state == "resolved":
            raise UserError(f"{number(problem)} was resolved by CHG-{problem.fix_change_id} already.",
                            f"problem show {number(problem)}")
        if change.state not in FIXING_STATES or change.outcome == "failed":
            raise UserError(f"CHG-{change.id} is {change.state}{' (failed)' if change.outcome == 'failed' else ''}; "
                            "a problem is fixed by a change that was carried out (completed, or in review after it "
                            "without failing).", f"change show CHG-{change.id}")
        problem.fix_change_id, problem.resolved_at = change.id, work.now
        record.move(work, problem, "resolved", fix=f"CHG-{change.id}")
        known_errors.mark_fixed(work, problem, f"CHG-{change.id}")
        reply = show_reply(ctx, work.session, problem)
    reply.title = f"{number(problem)} resolved by CHG-{change.id}"
    reply.tone = "ok"
    reply.footer = (f"Watching for recurrence: an incident linked in the next {RECURRENCE.days} days "
                    "reopens it and tells its owner")
    return reply


def show_reply(ctx: Context, session, problem: Problem) -> Reply:
    cfg = ctx.config
    figures = record.impact(ctx, session, problem.id, ctx.now())
    fields = [Field("State", f"{ICON[problem.state]} {problem.state}"), Field("Owner", cfg.person_name(problem.owner)),
              Field("Services", cfg.service_names(problem.services) or "—"),
              Field("Incidents", f"{figures.incidents} ({figures.still_open} open)"),
              Field("Impact", f"{record.hours(figures.business_seconds)} business time, "
                              f"{record.hours(figures.clock_seconds)} on the clock"),
              Field("Breaches", str(figures.breaches))]
    if problem.article_id:
        fields.append(Field("Known error", f"KB-{problem.article_id}"))
    if problem.fix_change_id:
        fields.append(Field("Fixed by", f"CHG-{problem.fix_change_id}, {problem.resolved_at:%Y-%m-%d}"))
    if problem.reopened:
        fields.append(Field("Came back", f"{problem.reopened} time{'s' * (problem.reopened != 1)} after a fix"))
    sections = [Section(text=problem.title, fields=fields)]
    parts = [f"*{label}:* {text}" for label, text in (("Symptom", problem.symptom), ("Workaround", problem.workaround),
                                                       ("Cause", problem.cause)) if text]
    if parts:
        sections.append(Section(title="Known error", text="\n".join(parts)))
    tickets = record.tickets_of(session, problem.id)
    if tickets:
        sections.append(Section(title="Incidents", text="\n".join(
            f"*INC-{t.id}* {t.title} · {t.state} · opened {t.opened_at:%Y-%m-%d}" for t in tickets[-SHOWN:])
            + (f"\n… and {len(tickets) - SHOWN} earlier" if len(tickets) > SHOWN else "")))
    return Reply(title=f"{number(problem)}: {problem.title}", sections=sections,
                 footer=f"problem link {number(problem)} INC-N · problem known-error {number(problem)} "
                        f'workaround="…" · problem fix {number(problem)} CHG-N')


def list_reply(ctx: Context, args: list[str]) -> Reply:
    wanted = [a.lower() for a in args]
    bad = [w for w in wanted if w not in STATES]
    if bad:
        raise UserError(f"'{bad[0]}' is not a problem state; states: {', '.join(STATES)}.", "problem list known-error")
    states = wanted or ["open", "known-error"]
    with ctx.reader() as s:
        counts = dict(s.execute(select(ProblemIncident.problem_id, func.count()).group_by(ProblemIncident.problem_id)
                                .where(ProblemIncident.problem_id.in_(
                                    select(Problem.id).where(Problem.state.in_(states))))).all())
        problems = s.scalars(select(Problem).where(Problem.state.in_(states))
                             .order_by(Problem.updated_at.desc(), Problem.id.desc()).limit(SHOWN)).all()
    if not problems:
        return Reply(title=f"No {' or '.join(states)} problems", footer=f"Try: {NEW_EXAMPLE}")
    lines = [f"{ICON[p.state]} *{number(p)}* {p.title} — {ctx.config.service_names(p.services)} · "
             f"{counts.get(p.id, 0)} incident{'s' * (counts.get(p.id, 0) != 1)} · {p.state}" for p in problems]
    return Reply(title=f"Problems: {', '.join(states)}", text="\n".join(lines),
                 footer="problem show PRB-N · problem list resolved")

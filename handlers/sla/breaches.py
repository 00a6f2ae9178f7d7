"""Clocks in the store, the sweep that finds what is due, and the warning and breach notices.

Each clock row keeps ``next_check_at``: the instant of its next unannounced warning or breach. The
sweep reads only the rows whose instant has come (an index, not a scan of open tickets), measures
them again, and writes the notice, the outbox rows and the new ``next_check_at`` in one transaction.
A notice row is unique per clock and level, so a late, repeated or concurrent sweep announces nothing
twice; crossing several levels at once (a ticket that arrives already late) gives one notice, the
highest. Warnings wait for the end of the calendar's quiet hours; breaches do not.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from handlers.core.context import Button, Command, Context, Field, Reply, Section, UserError, Work, batches
from handlers.sla.clocks import ClockSpec, Event, Measure, measure, replay, specs_for
from storage.bulk import insert_rows
from storage.models import ClockNotice, Setting, SlaClock, Ticket, TicketEvent

log = logging.getLogger("svcbot.breaches")

BREACH = 100.0


BATCH = 500  # ids per IN (…): well inside SQLite's and PostgreSQL's limits on bound parameters


def events_of(session, ticket_id: int) -> list[Event]:
    return events_of_tickets(session, [ticket_id]).get(ticket_id, [])


def events_of_tickets(session, ticket_ids) -> dict[int, list[Event]]:
    """Each ticket's events in order, read in a few statements however many tickets there are."""
    ids, out = sorted(set(ticket_ids)), {}
    for chunk in batches(ids, BATCH):
        rows = session.execute(select(TicketEvent.ticket_id, TicketEvent.at, TicketEvent.kind, TicketEvent.value)
                               .where(TicketEvent.ticket_id.in_(chunk))
                               .order_by(TicketEvent.ticket_id, TicketEvent.at, TicketEvent.id))
        for ticket_id, at, kind, value in rows:
            out.setdefault(ticket_id, []).append(Event(at, kind, value))
    return out


def next_check(m: Measure, notified: float) -> datetime | None:
    """When this clock next has something to say: its next unannounced level, while it runs."""
    if not m.running:
        return None
    ahead = [at for level, at in m.threshold_at.items() if level > notified and at is not None]
    return min(ahead) if ahead else None


def sync_clocks(work: Work, ticket: Ticket, *, announce_past: bool = True) -> None:
    """Measure every clock of the ticket again from its history and store the result.

    ``announce_past=False`` (imports): levels already passed count as announced, so history is never
    announced as news; what is still ahead is announced when it comes."""
    session, now = work.session, work.now
    session.flush()
    timeline = replay(events_of(session, ticket.id))
    existing = {(c.agreement_id, c.metric): c for c in
                session.scalars(select(SlaClock).where(SlaClock.ticket_id == ticket.id))}
    for spec in specs_for(work.ctx.config, ticket.service_id):
        key = (spec.agreement.id, spec.metric)
        clock = existing.pop(key, None)
        m = measure(spec, timeline, now)
        if m is None:  # the current priority has no target in this agreement
            if clock is not None:
                # Kept, with what it announced, in case the priority comes back: nothing is told twice.
                clock.state, clock.breached, clock.due_at, clock.next_check_at = "inactive", False, None, None
                clock.priority, clock.computed_at = timeline[-1][1].priority, now
            continue
        if clock is None:
            clock = SlaClock(ticket_id=ticket.id, agreement_id=spec.agreement.id, kind=spec.agreement.kind,
                             metric=spec.metric, notified_level=0)
            session.add(clock)
        store(clock, m, timeline[-1][1].priority, now)
        announced = session.scalar(select(func.max(ClockNotice.level)).where(ClockNotice.clock_id == clock.id)) \
            if clock.id and not announce_past else None
        _settle(clock, m, now, announce_past, announced)
    for clock in existing.values():  # agreements that no longer apply (app.yaml changed)
        _drop(session, clock)


def _settle(clock, m: Measure, now: datetime, announce_past: bool, announced: float | None) -> None:
    """The clock's notified level and next check, once ``store`` has put the measure on it."""
    if not announce_past:
        # What the rules now say has passed, or what was really announced: a target shortened and then
        # lengthened again still announces the breach it really reaches.
        passed = [level for level, at in m.threshold_at.items() if at is not None and at <= now]
        clock.notified_level = max(passed + [announced or 0, BREACH if m.stopped_at else 0])
    clock.next_check_at = next_check(m, clock.notified_level)


def sync_clocks_of_histories(work: Work, histories: list[tuple[int, str, list[Event]]], *,
                             announce_past: bool = True, stored_times: dict | None = None) -> None:
    """``sync_clocks`` for many tickets at once, given each one's id, service and whole history in the
    store's order (by time, then as recorded): what an import has in hand. Their clocks and notices are
    read in a few statements, and new clocks are written in one (``stored_times``: see ``insert_rows``)."""
    session, now, config = work.session, work.now, work.ctx.config
    session.flush()
    existing: dict[int, dict[tuple[str, str], SlaClock]] = {ticket_id: {} for ticket_id, _, _ in histories}
    for chunk in batches(list(existing), BATCH):
        for clock in session.scalars(select(SlaClock).where(SlaClock.ticket_id.in_(chunk))):
            existing[clock.ticket_id][(clock.agreement_id, clock.metric)] = clock
    announced: dict[int, float] = {}
    if not announce_past:
        clock_ids = [c.id for clocks in existing.values() for c in clocks.values()]
        for chunk in batches(clock_ids, BATCH):
            announced.update(session.execute(
                select(ClockNotice.clock_id, func.max(ClockNotice.level))
                .where(ClockNotice.clock_id.in_(chunk)).group_by(ClockNotice.clock_id)).all())
    specs: dict[str, list[ClockSpec]] = {}
    new_clocks: list[dict] = []
    for ticket_id, service_id, events in histories:
        timeline = replay(events)
        clocks = existing[ticket_id]
        if service_id not in specs:
            specs[service_id] = specs_for(config, service_id)
        for spec in specs[service_id]:
            clock = clocks.pop((spec.agreement.id, spec.metric), None)
            m = measure(spec, timeline, now)
            if m is None:  # as sync_clocks: kept, inactive
                if clock is not None:
                    clock.state, clock.breached, clock.due_at, clock.next_check_at = "inactive", False, None, None
                    clock.priority, clock.computed_at = timeline[-1][1].priority, now
                continue
            if clock is None:
                fresh = SimpleNamespace(ticket_id=ticket_id, agreement_id=spec.agreement.id,
                                        kind=spec.agreement.kind, metric=spec.metric, notified_level=0)
                store(fresh, m, timeline[-1][1].priority, now)
                _settle(fresh, m, now, announce_past, None)
                new_clocks.append(vars(fresh))
                continue
            store(clock, m, timeline[-1][1].priority, now)
            _settle(clock, m, now, announce_past, announced.get(clock.id))
        for clock in clocks.values():
            _drop(session, clock)
    insert_rows(session, SlaClock.__table__, new_clocks, stored_times)


def _drop(session, clock: SlaClock) -> None:
    session.execute(delete(ClockNotice).where(ClockNotice.clock_id == clock.id))
    session.delete(clock)


def store(clock: SlaClock, m: Measure, priority: str, now: datetime) -> None:
    clock.priority, clock.target_seconds, clock.elapsed_seconds = priority, m.target_seconds, m.elapsed_seconds
    clock.state, clock.breached = m.state, m.breached
    clock.started_at, clock.due_at, clock.stopped_at, clock.computed_at = m.started_at, m.due_at, m.stopped_at, now


def spec_of(ctx: Context, clock: SlaClock, service_id: str) -> ClockSpec | None:
    return next((s for s in specs_for(ctx.config, service_id)
                 if s.agreement.id == clock.agreement_id and s.metric == clock.metric), None)


# -------------------------------------------------------------------------------------------- sweep

def sweep(ctx: Context, batch: int = 200) -> int:
    """Announce every warning and breach that is due; returns how many notices were written."""
    now = ctx.now()
    written = 0
    with ctx.sessions.begin() as session:
        query = (select(SlaClock).where(SlaClock.next_check_at <= now).order_by(SlaClock.next_check_at)
                 .limit(batch))
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)  # replicas share the work instead of repeating it
        clocks = session.scalars(query).all()
        # The batch's tickets and histories in a few statements, not two for each clock.
        ids = sorted({c.ticket_id for c in clocks})
        tickets = {t.id: t for chunk in batches(ids, BATCH)
                   for t in session.scalars(select(Ticket).where(Ticket.id.in_(chunk)))}
        histories = events_of_tickets(session, ids)
        work = Work(ctx, session, None)
        for clock in clocks:
            try:
                with session.begin_nested():
                    written += _check(work, clock, tickets[clock.ticket_id],
                                      histories.get(clock.ticket_id, []), now)
            except IntegrityError:  # another sweep announced it first
                log.info("clock %s level already announced", clock.id)
    if written:
        ctx.on_outbox()
    return written


def _check(work: Work, clock: SlaClock, ticket: Ticket, history: list[Event], now: datetime) -> int:
    session, ctx = work.session, work.ctx
    spec = spec_of(ctx, clock, ticket.service_id)
    m = measure(spec, replay(history), now) if spec else None
    if m is None:
        clock.next_check_at = None
        return 0
    store(clock, m, ticket.priority, now)
    due_levels = [level for level, at in m.threshold_at.items()
                  if at is not None and at <= now and level > clock.notified_level]
    if not due_levels:
        clock.next_check_at = next_check(m, clock.notified_level)
        return 0
    level = max(due_levels)
    if level < BREACH and spec.calendar.in_quiet_hours(now):
        # A warning can wait till morning; the breach, if it comes first, cannot.
        breach_at = m.threshold_at.get(BREACH)
        morning = spec.calendar.quiet_hours_end(now)
        clock.next_check_at = min(morning, breach_at) if breach_at and breach_at > now else morning
        return 0
    notice = ClockNotice(clock_id=clock.id, level=level, at=now)
    session.add(notice)
    session.flush()
    _announce(work, ticket, clock, spec, m, level, notice.id, now)
    # Changed after the notice's messages are queued: the queries that queue them then have nothing to
    # flush first, and the savepoint writes the clock and the messages in one flush.
    clock.notified_level = level
    clock.next_check_at = next_check(m, level)
    return 1


def _announce(work: Work, ticket: Ticket, clock: SlaClock, spec: ClockSpec, m: Measure, level: float,
              notice_id: int, now: datetime) -> None:
    ctx = work.ctx
    service = ctx.config.service(ticket.service_id)
    reply = notice_reply(work.session, ctx, ticket, clock, spec, m, level, notice_id, now)
    key = f"clock:{clock.id}:{level:g}"
    channels = [service.channel] if service and service.channel else []
    group = ctx.config.group(ticket.assignment_group) if ticket.assignment_group else None
    if group and group.channel and group.channel not in channels:
        channels.append(group.channel)
    if level >= BREACH and service:  # first: its query of identities flushes what is queued before it
        work.message_person(service.owner, reply, key, f"ticket:{ticket.id}")
    for channel in channels:
        work.post_to_channel(channel, reply, key, f"ticket:{ticket.id}")


def human(seconds: float) -> str:
    seconds = int(round(abs(seconds)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes or not
                                                                                              (days or hours))
    return " ".join(parts)


def notice_reply(session, ctx: Context, ticket: Ticket, clock: SlaClock, spec: ClockSpec, m: Measure,
                 level: float, notice_id: int, now: datetime) -> Reply:
    agreement = spec.agreement
    target = spec.target_for(ticket.priority)
    what = f"{agreement.kind.upper()} {agreement.id} {clock.metric} {ticket.priority} (within {target_text(target)})"
    if level >= BREACH:
        title = f"🔴 Breached: INC-{ticket.id} {clock.metric} target"
        status = f"Late by {human(m.elapsed_seconds - m.target_seconds)}" if m.breached else "Due now"
    else:
        kind_of_time = " business time" if target.within.business else ""
        left = m.target_seconds - m.elapsed_seconds
        if level in m.leads:
            # Said as configured ("due in 1 h") when on time; a warning held back by quiet hours says what is left.
            shown = m.leads[level] if left > m.leads[level] - 60 else left
            title = f"⚠️ INC-{ticket.id}: {clock.metric} target due in {human(shown)}{kind_of_time}"
        else:
            title = f"⚠️ INC-{ticket.id}: {level:g} % of the {clock.metric} target used"
        status = f"Due {m.due_at:%Y-%m-%d %H:%M} UTC, in {human(left)}{kind_of_time}" if m.due_at else "Paused"
    fields = [Field("Ticket", f"INC-{ticket.id} · {ticket.priority} · {ticket.state}"),
              Field("Service", ticket.service_id), Field("Target", what), Field("Status", status),
              Field("Used", f"{human(m.elapsed_seconds)} of {human(m.target_seconds)}")]
    used_by = underpinning_lines(session, ctx, ticket.id, agreement.id, now)
    if used_by:
        fields.append(Field("Time used by", "\n".join(used_by)))
    return Reply(title=title, text=ticket.title, sections=[Section(fields=fields)],
                 buttons=[Button("Acknowledge", f"sla ack {notice_id}", "primary")],
                 tone="error" if level >= BREACH else "warning", private=False)


def target_text(target) -> str:
    w = target.within
    if w.whole_days:
        return f"{w.whole_days} business day{'s' * (w.whole_days != 1)}"
    return human(w.minutes * 60) + (" business time" if w.business else "")


def measured_now(session, ctx: Context, clocks: list[SlaClock], now: datetime) -> dict[int, Measure]:
    """Clocks measured at ``now``. A stored row is exact as of its last event or sweep; a clock still
    running has used more since, so whoever shows it measures it again."""
    out: dict[int, Measure] = {}
    ids = sorted({c.ticket_id for c in clocks})
    service_of = {}
    for chunk in batches(ids, BATCH):
        service_of.update(session.execute(select(Ticket.id, Ticket.service_id).where(Ticket.id.in_(chunk))).all())
    events = events_of_tickets(session, ids)
    timelines: dict[int, list] = {}
    for clock in clocks:
        spec = spec_of(ctx, clock, service_of[clock.ticket_id])
        if spec is None:
            continue
        if clock.ticket_id not in timelines:
            timelines[clock.ticket_id] = replay(events.get(clock.ticket_id, []))
        m = measure(spec, timelines[clock.ticket_id], now)
        if m is not None:
            out[clock.id] = m
    return out


def underpinning_lines(session, ctx: Context, ticket_id: int, sla_id: str, now: datetime) -> list[str]:
    """The OLAs and UCs under an SLA, each with the time it has used on this ticket by ``now``."""
    under = {a.id for a in ctx.config.agreements if a.underpins == sla_id}
    if not under:
        return []
    clocks = session.scalars(select(SlaClock).where(SlaClock.ticket_id == ticket_id,
                                                    SlaClock.agreement_id.in_(under))
                             .order_by(SlaClock.agreement_id, SlaClock.metric)).all()
    now_measured = measured_now(session, ctx, clocks, now)
    lines = []
    for c in clocks:
        m = now_measured.get(c.id)
        if m is None or m.state == "unused":
            continue
        lines.append(use_text(c.kind, c.agreement_id, c.metric, m.elapsed_seconds, m.target_seconds, m.breached))
    return lines


def use_text(kind: str, agreement: str, metric: str, elapsed: float, target: float, breached: bool) -> str:
    """The time an underpinning clock used: "OLA OLA-PAY-OPS resolution: 3 h of 2 h — breached"."""
    return f"{kind.upper()} {agreement} {metric}: {human(elapsed)} of {human(target)}" + \
        (" — breached" if breached else "")


def clock_lines(session, ticket_id: int) -> list[str]:
    clocks = session.scalars(select(SlaClock).where(SlaClock.ticket_id == ticket_id)
                             .order_by(SlaClock.kind, SlaClock.agreement_id, SlaClock.metric)).all()
    out = []
    for c in clocks:
        if c.state == "running" and c.due_at:
            when = f"due {c.due_at:%Y-%m-%d %H:%M} UTC"
        elif c.state == "paused":
            when = "paused"
        elif c.state == "inactive":
            when = f"no target for {c.priority} in this agreement"
        else:
            when = c.state
        used = 100 * c.elapsed_seconds / c.target_seconds if c.target_seconds else 0
        out.append(f"{c.kind.upper()} {c.agreement_id} {c.metric}: {used:.0f} % used, {when}")
    return out


def acknowledge(ctx: Context, cmd: Command, notice_id: str) -> Reply:
    if not notice_id.isdigit():
        raise UserError("Say which notice to acknowledge.", "sla ack 12")
    with ctx.change(cmd) as work:
        notice = work.session.get(ClockNotice, int(notice_id))
        if notice is None:
            raise UserError(f"There is no notice {notice_id}.", "sla ack 12")
        if notice.acknowledged_by:
            return Reply(title=f"Already acknowledged by {notice.acknowledged_by}", tone="info")
        notice.acknowledged_by, notice.acknowledged_at = cmd.actor.person_id, work.now
        clock = work.session.get(SlaClock, notice.clock_id)
        work.audit("sla.acknowledge", f"INC-{clock.ticket_id}", notice=notice.id, level=notice.level)
    return Reply(title=f"Acknowledged: INC-{clock.ticket_id} {clock.metric} notice", tone="ok")


def agreements_fingerprint(ctx: Context) -> str:
    """A hash of everything clocks depend on in app.yaml: when it changes, clocks are measured again."""
    cfg = ctx.config
    data = [cfg.calendars, cfg.agreements, [(s.id, s.calendar, s.suppliers) for s in cfg.services],
            [(g.id, g.calendar) for g in cfg.groups]]
    return hashlib.sha256(repr(data).encode()).hexdigest()


def recompute_if_changed(ctx: Context) -> int:
    fingerprint = agreements_fingerprint(ctx)
    with ctx.sessions() as s:
        row = s.get(Setting, "clocks.agreements")
        if row is not None and row.value == fingerprint:
            return 0
    done = recompute_all(ctx)
    with ctx.sessions.begin() as s:
        row = s.get(Setting, "clocks.agreements")
        if row is None:
            s.add(Setting(key="clocks.agreements", value=fingerprint))
        else:
            row.value = fingerprint
    if done:
        log.info("clocks of %d tickets measured again against app.yaml's agreements and calendars", done)
    return done


def recompute_all(ctx: Context, batch: int = 500) -> int:
    """Measure every ticket's clocks again, after app.yaml's agreements or calendars changed."""
    done, last = 0, 0
    while True:
        with ctx.sessions.begin() as session:
            tickets = session.scalars(select(Ticket).where(Ticket.id > last).order_by(Ticket.id).limit(batch)).all()
            if not tickets:
                return done
            work = Work(ctx, session, None)
            for ticket in tickets:
                sync_clocks(work, ticket, announce_past=False)
            last, done = tickets[-1].id, done + len(tickets)


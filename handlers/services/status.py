"""The service catalogue and its status: status, service set, subscribe, unsubscribe."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.changes.record import window_text
from handlers.changes.rules import HOLDING
from handlers.core.catalogue import find_service, may_set_status
from handlers.core.config_catalogue import SERVICE_STATES, Service
from handlers.core.context import Button, Command, Context, Field, Refused, Reply, Section, UserError, nearest, retyped
from handlers.core.remembered import STATUS_OVERVIEW
from handlers.services import catalogue_review
from handlers.sla import dependents, outages
from handlers.surveys import asking
from handlers.surveys import results as survey_results
from storage.models import Change, ChangeService, ServiceStatus, StatusChange, Subscription

STATE_ICON = {
    "operational": "🟢",
    "degraded": "🟡",
    "partial-outage": "🟠",
    "major-outage": "🔴",
    "maintenance": "🔧",
}
STATE_TONE = {"operational": "ok", "degraded": "warning", "partial-outage": "warning",
              "major-outage": "error", "maintenance": "info"}
STATE_PHRASE = {"maintenance": "under maintenance", "partial-outage": "in a partial outage",
                "major-outage": "in a major outage"}
SET_EXAMPLE = "service set payments degraded Card payments are slow; we are on it"

SATISFACTION_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class ServiceState:
    """A service of the catalogue and its state now: operational unless someone said otherwise."""

    id: str
    name: str
    tier: int
    state: str
    message: str
    since: datetime | None  # None: its state was never set


@dataclass(frozen=True)
class Overview:
    services: list[ServiceState]  # by tier, then name
    title: str
    tone: str


# Every service's state as plain columns, read for every `status` asked: built once.
CURRENT_STATES = select(ServiceStatus.service_id, ServiceStatus.state, ServiceStatus.message, ServiceStatus.since)


def overview(ctx: Context, session: Session | None = None) -> Overview:
    """Every service at a glance, as plain data: what `status` answers, the status page and digests show."""
    found = session.execute(CURRENT_STATES) if session is not None else ctx.read(CURRENT_STATES)
    rows = {row.service_id: row for row in found}
    services = []
    for svc in sorted(ctx.config.services, key=lambda s: (s.tier, s.name)):
        row = rows.get(svc.id)
        services.append(ServiceState(svc.id, svc.name, svc.tier, row.state if row else "operational",
                                     row.message if row else "", row.since if row else None))
    # Maintenance is planned work, not an outage: it never makes the headline worse than operational.
    worst = max((s.state for s in services if s.state != "maintenance"), key=SERVICE_STATES.index,
                default="operational")
    if worst != "operational":
        title = "Some services are affected"
    elif any(s.state == "maintenance" for s in services):
        title = "Services operational; maintenance under way"
    else:
        title = "All services operational"
    return Overview(services, title, STATE_TONE[worst])


def show(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    if len(args) > 1:
        raise UserError("`status` takes at most one service.", "status payments")
    if args:
        return _one(ctx, cmd, find_service(ctx, args[0], "status payments"))
    return overview_reply(ctx, cmd.store_version)


OVERVIEW_KEY = STATUS_OVERVIEW  # what `status` alone answers, in ctx.remembered


def overview_reply(ctx: Context, version: int | None = None) -> Reply:
    """`status` alone, the same for everyone: kept in memory at the store's ``version`` as the request read
    it (it changes with service_status and outages, which the version follows, and when an outage of a
    service others depend on begins or ends), else read and kept."""
    now = ctx.now()
    reply = ctx.remembered.get(OVERVIEW_KEY, version, now)
    if reply is not None:
        return reply
    until = dependents.next_outage_edge(ctx, now)
    view = overview(ctx)
    affected = dependents.affected_services(ctx)
    sections = [Section(text=f"{STATE_ICON[s.state]} *{s.name}* (`{s.id}`, tier {s.tier}) — {s.state}"
                        + (f": {s.message}" if s.message else ""),
                        fields=[Field("Affected by", dependents.affected_text(ctx, affected[s.id]))]
                        if s.id in affected else []) for s in view.services]
    reply = Reply(title=view.title, sections=sections, tone=view.tone,
                  footer=f"{len(view.services)} services · `status SERVICE` for one")
    ctx.remembered.keep(OVERVIEW_KEY, version, reply, until)
    return reply


def _one(ctx: Context, cmd: Command, svc: Service) -> Reply:
    cfg = ctx.config
    with ctx.reader() as s:
        row = s.get(ServiceStatus, svc.id)
        history = s.scalars(select(StatusChange).where(StatusChange.service_id == svc.id)
                            .order_by(StatusChange.id.desc()).limit(5)).all()
        subscribers = s.scalar(select(func.count()).select_from(Subscription)
                               .where(Subscription.service_id == svc.id))
        subscribed = s.get(Subscription, (cmd.actor.person_id, svc.id)) is not None
        upcoming = s.scalars(select(Change).join(ChangeService, ChangeService.change_id == Change.id)
                             .where(ChangeService.service_id == svc.id, Change.state.in_(HOLDING),
                                    Change.planned_end > ctx.now())
                             .order_by(Change.planned_start).limit(5)).all()
        csat = asking.service_satisfaction(ctx, s, svc.id, ctx.now() - SATISFACTION_WINDOW, None)
        unconfirmed = catalogue_review.overdue(s, ctx.now(), [svc.id])
        affected = dependents.affected_by(ctx, svc.id, s)
    state = row.state if row else "operational"
    owner = cfg.person(svc.owner)
    team = cfg.group(svc.team) if svc.team else None
    fields = [
        Field("Status", f"{STATE_ICON[state]} {state}"),
        Field("Since", row.since.strftime("%Y-%m-%d %H:%M UTC") if row else "—"),
        Field("Tier", str(svc.tier)),
        Field("Owner", owner.name if owner else svc.owner),
        Field("Team", f"{team.name} ({team.location})" if team and team.location else team.name if team else "—"),
        Field("Calendar", svc.calendar),
        Field("Suppliers", ", ".join(cfg.group(x).name for x in svc.suppliers) or "—"),
        Field("Subscribers", str(subscribers)),
        Field("Satisfaction (30 days)",
              f"CSAT {csat.score_text()} of {survey_results.answers_text(csat.answers)}" if csat.answers else "—"),
    ]
    if svc.depends_on:
        fields.append(Field("Depends on", ", ".join(cfg.service_names([d.service]) + (
            " (partly)" if d.impact == "partial" else "") for d in svc.depends_on)))
    if affected:
        fields.append(Field("Affected by", dependents.affected_text(ctx, affected)))
    if unconfirmed:
        said = "needs change" if unconfirmed[0].needs_change else "unconfirmed"
        fields.append(Field("Catalogue entry",
                            f"⚠️ {said} since {unconfirmed[0].due_at:%Y-%m-%d} (catalogue confirm {svc.id})"))
    sections = [Section(text=row.message if row and row.message else svc.description, fields=fields)]
    if history:
        lines = [f"{h.at:%Y-%m-%d %H:%M} {STATE_ICON[h.previous_state]}→{STATE_ICON[h.state]} {h.state}"
                 + (f": {h.message}" if h.message else "") for h in history]
        sections.append(Section(title="Recent status changes", text="\n".join(lines)))
    if upcoming:
        sections.append(Section(title="Next changes", text="\n".join(
            f"*CHG-{c.id}* {c.title} — {c.state}, {window_text(c, cmd.actor.timezone)}" for c in upcoming)))
    button = (Button("Unsubscribe", f"unsubscribe {svc.id}") if subscribed
              else Button("Subscribe", f"subscribe {svc.id}", "primary"))
    return Reply(title=f"{svc.name}", sections=sections, buttons=[button], tone=STATE_TONE[state])


def service_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    if not args or args[0].lower() != "set":
        typo = bool(args) and nearest(args[0], ("set",)) is not None
        raise UserError("Use `service set SERVICE STATE [message]`." + (" Did you mean `service set`?" if typo else ""),
                        retyped("service set", args[1:]) if typo and len(args) > 2 else SET_EXAMPLE)
    if len(args) < 3:
        raise UserError("Say the service and its new state.", SET_EXAMPLE)
    svc = find_service(ctx, args[1], SET_EXAMPLE)
    state = args[2].lower()
    if state not in SERVICE_STATES:
        raise UserError(f"'{args[2]}' is not a state. States: {', '.join(SERVICE_STATES)}.", SET_EXAMPLE)
    message = " ".join(args[3:]).strip()
    if not may_set_status(ctx, cmd.actor.person_id, svc):
        owner = ctx.config.person(svc.owner)
        raise Refused(f"Only {svc.name}'s owner ({owner.name if owner else svc.owner}), its team or a "
                      f"service manager can set its status.")

    with ctx.change(cmd) as work:
        watch = dependents.StateWatch(work, svc.id)
        row = work.session.get(ServiceStatus, svc.id)
        previous = row.state if row else "operational"
        if previous == state and not message:
            raise UserError(f"{svc.name} is already {state}; add a message to post an update.",
                            f"service set {svc.id} {state} Still investigating")
        if row is None:
            row = ServiceStatus(service_id=svc.id, state=state, message=message, since=work.now,
                                updated_by=cmd.actor.person_id)
            work.session.add(row)
        else:
            if previous != state:
                row.since = work.now
            row.state, row.message, row.updated_by = state, message, cmd.actor.person_id
        change = StatusChange(service_id=svc.id, previous_state=previous, state=state, message=message,
                              at=work.now, person_id=cmd.actor.person_id, platform=cmd.actor.platform)
        work.session.add(change)
        work.session.flush()
        work.audit("service.set", f"service:{svc.id}", previous=previous, state=state, message=message)
        outages.status_changed(work, svc.id, previous, state, change.id, message)
        watch.settle(f"status:{change.id}", message)

        announcement = _announcement(svc, previous, state, message, cmd.actor.name)
        key = f"status:{change.id}"
        platforms = work.post_to_channel(svc.channel, announcement, key, f"service:{svc.id}") if svc.channel else []
        subscribers = work.session.scalars(select(Subscription.person_id)
                                           .where(Subscription.service_id == svc.id)).all()
        for pid in subscribers:
            work.message_person(pid, announcement, key, f"service:{svc.id}")

    where = []
    if platforms:
        where.append(f"#{svc.channel} ({' and '.join(p.title() for p in platforms)})")
    if subscribers:
        where.append(f"{len(subscribers)} subscriber{'s' if len(subscribers) != 1 else ''}")
    verb = "is now" if previous != state else "is still"
    return Reply(title=f"{STATE_ICON[state]} {svc.name} {verb} {STATE_PHRASE.get(state, state)}", text=message,
                 footer=("Announced to " + " and ".join(where)) if where else "No channel or subscribers to tell",
                 tone="ok")


def _announcement(svc: Service, previous: str, state: str, message: str, by: str) -> Reply:
    title = (f"{STATE_ICON[state]} {svc.name}: {state}" if previous != state
             else f"{STATE_ICON[state]} {svc.name}: update")
    fields = [Field("Status", state), Field("Was", previous), Field("Set by", by)]
    return Reply(title=title, text=message, sections=[Section(fields=fields)],
                 buttons=[Button("Subscribe", f"subscribe {svc.id}")], tone=STATE_TONE[state], private=False)


def subscribe(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    svc = find_service(ctx, args[0] if len(args) == 1 else None, "subscribe payments")
    with ctx.change(cmd) as work:
        if work.session.get(Subscription, (cmd.actor.person_id, svc.id)):
            return Reply(title=f"You already follow {svc.name}", tone="info")
        work.session.add(Subscription(person_id=cmd.actor.person_id, service_id=svc.id, created_at=work.now))
        work.audit("service.subscribe", f"service:{svc.id}")
    return Reply(title=f"You now follow {svc.name}",
                 text="Its announcements will reach you by direct message.", tone="ok",
                 buttons=[Button("Unsubscribe", f"unsubscribe {svc.id}")])


def unsubscribe(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    svc = find_service(ctx, args[0] if len(args) == 1 else None, "unsubscribe payments")
    with ctx.change(cmd) as work:
        sub = work.session.get(Subscription, (cmd.actor.person_id, svc.id))
        if sub is None:
            return Reply(title=f"You were not following {svc.name}", tone="info")
        work.session.delete(sub)
        work.audit("service.unsubscribe", f"service:{svc.id}")
    return Reply(title=f"You no longer follow {svc.name}", tone="ok")

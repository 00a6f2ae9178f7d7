"""impact SERVICE: what a failure of a service would reach — the business impact analysis a manager reads
before approving a risky change. The services that depend on it, transitively, fully or partly and through
what (handlers/core/dependencies.py); the agreements on it and on them, with their targets and attainment
this month so far (handlers/sla/at_stake.py); the channels that would be told and the people who would hear
of it: owners, the members of their teams, and subscribers (counted, not named).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from handlers.core.catalogue import find_service
from handlers.core.config_catalogue import Service
from handlers.core.context import Command, Context, Field, Reply, Section, UserError
from handlers.core.dependencies import Reach, dependency_graph
from handlers.sla import at_stake, attainment, dependents
from storage.models import Subscription

EXAMPLE = "impact payments"
SERVICES_SHOWN = 25
AGREEMENTS_SHOWN = 15


@dataclass(slots=True)  # not frozen: a frozen dataclass sets each field through object.__setattr__
class Reached:
    """A service a failure would reach: the one failing itself, or one that depends on it."""

    id: str
    name: str
    tier: int
    impact: str  # full | partial
    path: tuple[str, ...]  # from this service down to the one failing
    state: str  # its own state now, as its dependents feel it
    channel: str | None
    owner: str
    team: str | None
    subscribers: int


@dataclass(frozen=True)
class Impact:
    service: Reached
    dependents: list[Reached]  # nearest first
    period: str
    agreements: list[at_stake.AgreementAtStake]  # the first measured, in order of concern
    more_agreements: int  # on the same services, beyond those measured
    channels: list[str]  # logical channels that would be told
    owners: list[str]  # people ids
    teams: list[str]  # group ids
    subscribers: int  # distinct people following any of these services
    people: int  # distinct people in all: owners, team members and subscribers


def impact_data(ctx: Context, svc: Service, measure: int | None = None) -> Impact:
    """What a failure of ``svc`` would reach; the attainment of the first ``measure`` agreements only (all if
    None), the rest counted in ``more_agreements``."""
    cfg = ctx.config
    graph = dependency_graph(cfg)
    reach = [Reach(svc.id, "full", (svc.id,)), *graph.dependents(svc.id)]
    ids = [r.service for r in reach]
    period = attainment.parse_period("this-month", ctx.now(), cfg.bot.timezone)
    # Plain reads on connections that only read: an ORM session costs more than these queries.
    states = dependents.current_states(ctx, ctx.now(), ids)
    following: dict[str, set[str]] = {}
    for pid, sid in dependents.among(ctx, None, select(Subscription.person_id, Subscription.service_id),
                                     Subscription.service_id, ids):
        following.setdefault(sid, set()).add(pid)
    # The agreements of the nearest and most critical services first: the service itself, then those that
    # stop with it before those that limp on, by tier, the nearest first.
    ordered = [reach[0].service] + [r.service for r in sorted(
        reach[1:], key=lambda r: (r.impact != "full", graph.services[r.service].tier, len(r.path)))]
    on = at_stake.agreements_on(ctx, ordered)
    agreements = at_stake.at_stake(ctx, on if measure is None else on[:measure], period)
    reached = []
    for r in reach:
        x = graph.services[r.service]
        reached.append(Reached(x.id, x.name, x.tier, r.impact, r.path, states.get(x.id, "operational"),
                               x.channel, x.owner, x.team, len(following.get(x.id, ()))))
    owners = list(dict.fromkeys(x.owner for x in reached))
    teams = list(dict.fromkeys(x.team for x in reached if x.team))
    followers = set().union(*following.values()) if following else set()
    members = {m for t in teams for m in cfg.group(t).members}
    return Impact(reached[0], reached[1:], period.name, agreements, len(on) - len(agreements),
                  list(dict.fromkeys(x.channel for x in reached if x.channel)), owners, teams, len(followers),
                  len(set(owners) | members | followers))


def impact_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    if len(args) != 1:
        raise UserError("Say which one service: `impact SERVICE`.", EXAMPLE)
    return impact_reply(ctx, impact_data(ctx, find_service(ctx, args[0], EXAMPLE), AGREEMENTS_SHOWN))


def impact_reply(ctx: Context, data: Impact) -> Reply:
    cfg, svc = ctx.config, data.service
    names = dependency_graph(cfg).services
    full = sum(1 for d in data.dependents if d.impact == "full")
    plural = "s" * (len(data.dependents) != 1)
    title = (f"If {svc.name} fails: {len(data.dependents)} service{plural} depend{'s' * (not plural)} on it"
             if data.dependents else f"If {svc.name} fails: nothing else depends on it")
    summary = [f"{full} fully, {len(data.dependents) - full} partly"] if data.dependents else []
    if svc.state != "operational":
        summary.append(f"{svc.name} is {dependents.STATE_WORDS[svc.state]} now")
    total = len(data.agreements) + data.more_agreements
    summary += [f"{total} agreement{'s' * (total != 1)}",
                f"{len(data.channels)} channel{'s' * (len(data.channels) != 1)}",
                f"{data.people} {'person' if data.people == 1 else 'people'}"]
    sections = []
    if data.dependents:
        lines = [f"{dependents.STATE_ICON[d.state]} *{d.name}* (`{d.id}`, tier {d.tier}) — "
                 + ("fully" if d.impact == "full" else "partly")
                 + (f", through {' → '.join(names[p].name for p in d.path[1:-1])}" if len(d.path) > 2 else "")
                 + (f"; {d.state}" if d.state != "operational" else "")
                 for d in data.dependents[:SERVICES_SHOWN]]
        if len(data.dependents) > SERVICES_SHOWN:
            lines.append(f"… and {len(data.dependents) - SERVICES_SHOWN} more (the JSON API lists them all)")
        sections.append(Section(title="Services that depend on it", text="\n".join(lines)))
    for a in data.agreements[:AGREEMENTS_SHOWN]:
        sections.append(Section(title=f"{a.kind.upper()} {a.id} — {a.party} · {names[a.service].name}",
                                text="\n".join(t.text for t in a.targets)))
    more = total - min(len(data.agreements), AGREEMENTS_SHOWN)
    if more:
        sections.append(Section(text=f"… and {more} more agreement{'s' * (more != 1)} on the services it carries "
                                     f"(GET /api/v1/services/{svc.id}/impact measures them all)"))
    team_names = [f"{cfg.group(t).name} ({len(cfg.group(t).members)})" for t in data.teams]
    sections.append(Section(title="Who would hear of it", fields=[
        Field("Channels", ", ".join(f"#{c}" for c in data.channels) or "—"),
        Field("Owners", ", ".join(cfg.person_name(p) for p in data.owners[:10])
              + (f" and {len(data.owners) - 10} more" if len(data.owners) > 10 else "")),
        Field("Teams", ", ".join(team_names[:10]) + (f" and {len(team_names) - 10} more" if len(team_names) > 10
                                                     else "") or "—"),
        Field("Subscribers", str(data.subscribers)),
    ]))
    return Reply(title=title, text=" · ".join(summary), sections=sections,
                 tone="warning" if full else "info",
                 footer=f"fully: it stops too; partly: it limps on · attainment: {data.period} so far")

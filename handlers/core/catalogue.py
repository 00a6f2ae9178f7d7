"""The service catalogue as people name it: a service found by what was typed, and who may speak for it."""
from __future__ import annotations

from handlers.core.config_catalogue import Service
from handlers.core.context import Context, UserError


def find_service(ctx: Context, key: str | None, example: str) -> Service:
    if not key:
        raise UserError("Say which service.", example)
    service = ctx.config.service(key)
    if service is None:
        known = ", ".join(s.id for s in ctx.config.services)
        raise UserError(f"There is no service '{key}'. Services: {known}.", example)
    return service


def may_set_status(ctx: Context, person_id: str, svc: Service) -> bool:
    team = ctx.config.group(svc.team) if svc.team else None
    return (person_id == svc.owner or "service_managers" in ctx.roles_of(person_id)
            or (team is not None and person_id in team.members))

"""Who is asking: platform accounts mapped to people, their roles and time zones."""
from __future__ import annotations

import re

from sqlalchemy import Row, bindparam, select
from sqlalchemy.exc import IntegrityError

from handlers.core.context import Actor, Context
from storage.models import Identity, Person


def sync_people(ctx: Context) -> None:
    """Make the people of app.yaml and their platform accounts known to the store."""
    now = ctx.now()
    with ctx.sessions.begin() as s:
        for p in ctx.config.people:
            row = s.get(Person, p.id)
            if row is None:
                s.add(Person(id=p.id, name=p.name, timezone=p.timezone, created_at=now))
            else:
                row.name, row.timezone = p.name, p.timezone
            s.flush()
            for platform in ("slack", "teams"):
                uid = getattr(p, platform)
                if not uid:
                    continue
                ident = s.scalar(select(Identity).where(Identity.platform == platform, Identity.external_id == uid))
                if ident is None:
                    s.add(Identity(platform=platform, external_id=uid, person_id=p.id))
                else:
                    ident.person_id = p.id


def resolve_actor(ctx: Context, platform: str, user_id: str, display_name: str = "",
                  address: str | None = None, tenant: str | None = None, register: bool = True,
                  version: int | None = None) -> Actor:
    """The person behind a platform account; someone not in app.yaml is remembered on first contact.
    ``address`` and ``tenant``: where Teams can reach them (their "29:…" id and tenant). Without
    ``register`` nothing is written: an anonymous answer must leave no trace of who gave it. With the
    store's ``version`` as the request read it, a person already known may come from memory."""
    if not register:
        return _look_up(ctx, platform, user_id, display_name)
    # Most requests come from someone already known, at the same address: a read, with no write lock.
    row = _stored(ctx, platform, user_id, version)
    if row is not None and not (address and (row.address, row.tenant_id) != (address, tenant)):
        person_id, name, tz = row.id, row.name, row.timezone
    else:
        try:
            person_id, name, tz = _identify(ctx, platform, user_id, display_name, address, tenant)
        except IntegrityError:  # the same person's first two requests arrived together: the other one won
            person_id, name, tz = _identify(ctx, platform, user_id, display_name, address, tenant)
    return Actor(person_id=person_id, name=name, platform=platform, roles=ctx.roles_of(person_id),
                 timezone=tz or ctx.config.bot.timezone)


# Who is behind a platform account, read for every request: built once.
STORED_PERSON = (select(Person.id, Person.name, Person.timezone, Identity.address, Identity.tenant_id)
                 .join_from(Identity, Person, Identity.person_id == Person.id)
                 .where(Identity.platform == bindparam("platform"), Identity.external_id == bindparam("user_id")))


def _stored(ctx: Context, platform: str, user_id: str, version: int | None = None) -> Row | None:
    """The person behind a platform account and where Teams reaches them, if stored: one query, as
    plain columns (id, name, timezone, address, tenant_id); none when kept in memory at ``version``."""
    row = ctx.remembered.get(("person", platform, user_id), version)
    if row is None:
        rows = ctx.read(STORED_PERSON, {"platform": platform, "user_id": user_id})
        row = rows[0] if rows else None
        if row is not None:
            ctx.remembered.keep(("person", platform, user_id), version, row)
    return row


def remembered_person(ctx: Context, platform: str, user_id: str, version: int, address: str | None = None,
                      tenant: str | None = None) -> str | None:
    """The id of the person behind a platform account as kept in memory at this version of the store, with
    nothing to write (known, at the same address); None otherwise: ask ``resolve_actor``."""
    row = ctx.remembered.get(("person", platform, user_id), version)
    if row is None or (address and (row.address, row.tenant_id) != (address, tenant)):
        return None
    return row.id


def _look_up(ctx: Context, platform: str, user_id: str, display_name: str) -> Actor:
    row = _stored(ctx, platform, user_id)
    if row is None:
        known = ctx.config.person_by_platform(platform, user_id)
        person_id = known.id if known else _new_person_id(platform, user_id)
        name, tz = (known.name, known.timezone) if known else (display_name or user_id, None)
    else:
        person_id, name, tz = row.id, row.name, row.timezone
    return Actor(person_id=person_id, name=name, platform=platform, roles=ctx.roles_of(person_id),
                 timezone=tz or ctx.config.bot.timezone)


def _identify(ctx: Context, platform: str, user_id: str, display_name: str, address: str | None,
              tenant: str | None):
    with ctx.sessions.begin() as s:
        ident = s.scalar(select(Identity).where(Identity.platform == platform, Identity.external_id == user_id))
        if ident is None:
            known = ctx.config.person_by_platform(platform, user_id)
            person_id = known.id if known else _new_person_id(platform, user_id)
            if s.get(Person, person_id) is None:
                s.add(Person(id=person_id, name=display_name or user_id, timezone=None, created_at=ctx.now()))
                s.flush()
            ident = Identity(platform=platform, external_id=user_id, person_id=person_id, address=address,
                             tenant_id=tenant)
            s.add(ident)
            s.flush()
        elif address and (ident.address, ident.tenant_id) != (address, tenant):
            ident.address, ident.tenant_id = address, tenant
        row = s.get(Person, ident.person_id)
        return row.id, row.name, row.timezone


def console_actor(ctx: Context, person_id: str | None) -> Actor:
    """The console speaks as a person from app.yaml: the one named, else the first service manager."""
    cfg = ctx.config
    pid = person_id or (cfg.roles.service_managers[0] if cfg.roles.service_managers else None)
    if pid is None and cfg.people:
        pid = cfg.people[0].id
    person = cfg.person(pid) if pid else None
    if person is None:
        raise LookupError(f"no person '{pid}' in app.yaml" if pid else "app.yaml names no people")
    return Actor(person_id=person.id, name=person.name, platform="console", roles=ctx.roles_of(person.id),
                 timezone=person.timezone or cfg.bot.timezone)


def _new_person_id(platform: str, user_id: str) -> str:
    return f"{platform}-" + re.sub(r"[^a-z0-9_-]", "-", user_id.lower())[:50]

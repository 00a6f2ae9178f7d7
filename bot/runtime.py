"""Everything a running svcbot shares: configuration, store, deliverer, metrics; and the one way in."""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from bot import render
from bot.metrics import Metrics
from bot.outbox import Deliverer
from bot.teams_trust import teams_mode
from handlers.core.config import AppConfig
from handlers.core.config_loading import load_config
from handlers.core.context import Command, Context, FormInvalid, Reply, UserError, Work
from handlers.core.people import resolve_actor, sync_people
from handlers.core.remembered import VERSION_SQL
from handlers.router import ROUTES, dispatch, from_memory, remembered, split_words, submit_form
from handlers.surveys import privacy, record
from storage.db import make_engine, session_factory, startup_lock, upgrade
from storage.models import Setting

log = logging.getLogger("svcbot")


@dataclass
class Outcome:
    reply: Reply
    outcome: str  # ok | user_error | refused | duplicate | error
    person_id: str
    invalid: FormInvalid | None = None  # a form's answers to show again, field by field
    # The dedupe key as stored; a reply queued to this delivery is keyed "reply:" + it.
    delivery_key: str | None = None


class Runtime:
    def __init__(self, config: AppConfig, database_url: str | None = None):
        render.use_templates(config.bot.templates)
        self.engine = make_engine(database_url)
        with startup_lock(self.engine):
            upgrade(self.engine)
            sessions = session_factory(self.engine)
            self.ctx = Context(config=config, sessions=sessions, secret=secret_key(sessions),
                               connected=connected_platforms())
            sync_people(self.ctx)
        self.metrics = Metrics(self.ctx.sessions, lambda: self.ctx.now())  # the clock a test may set later
        self.deliverer = Deliverer(self.ctx, {}, self.metrics)
        self.ctx.on_outbox = self.deliverer.kick
        self._version_reader: sqlite3.Connection | None = None  # see version_now
        url = self.engine.url
        self._version_readable = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        self._remembered_metrics: dict[tuple[str, str], tuple] = {}  # see answer_from_memory

    @classmethod
    def from_file(cls, path: str, database_url: str | None = None) -> "Runtime":
        return cls(load_config(path), database_url)

    def _run(self, platform: str, user_id: str, name: str, text: str, key: str | None,
             address: str | None, tenant: str | None, via: str, form: tuple | None) -> Outcome:
        # An answer to a survey registers nobody: if it is anonymous, no row may say who gave it.
        register = not record.is_answer(text, form[0] if form else None)
        # Read first: what is read after it and kept in memory is at least as new as this version.
        version = self.ctx.store_version() if form is None and remembered(text) else None
        actor = resolve_actor(self.ctx, platform, user_id, name, address, tenant, register=register, version=version)
        if not register:  # the platform's key may name the person: keep a hash, filed under the survey
            key = privacy.delivery_key(self.ctx, key, text, form)
        cmd = Command(actor=actor, text=text, delivery_key=key, via=via, store_version=version)
        if form is not None:
            reply, outcome, invalid = submit_form(self.ctx, cmd, *form)
            return Outcome(reply, outcome, actor.person_id, invalid, key)
        reply, outcome = dispatch(self.ctx, cmd)
        return Outcome(reply, outcome, actor.person_id, delivery_key=key)

    async def execute(self, platform: str, user_id: str, text: str, *, name: str = "",
                      key: str | None = None, address: str | None = None, tenant: str | None = None,
                      via: str = "text") -> Outcome:
        """Run one command for a platform user, off the event loop (the store is synchronous); or at once,
        when its answer is kept in memory (``answer_from_memory``)."""
        found = self.answer_from_memory(platform, user_id, text, key=key, address=address, tenant=tenant)
        if found is not None:
            return found
        return await self._timed(platform, command_name(text), user_id, name, text, key, address, tenant, via, None)

    async def submit(self, platform: str, user_id: str, form: str, values: dict, context: dict, *,
                     name: str = "", key: str | None = None, address: str | None = None,
                     tenant: str | None = None) -> Outcome:
        """Run a form's answers (a Slack modal, an Adaptive Card's inputs) for a platform user."""
        return await self._timed(platform, "form", user_id, name, f"form {form}", key, address, tenant, "form",
                                 (form, values, context))

    async def _timed(self, platform, label, *args) -> Outcome:
        started = time.perf_counter()
        result = await asyncio.to_thread(self._run, platform, *args)
        self.metrics.latency.labels(platform=platform).observe(time.perf_counter() - started)
        self.metrics.commands.labels(platform=platform, command=label, outcome=result.outcome).inc()
        return result

    def answer_from_memory(self, platform: str, user_id: str, text: str, *, key: str | None = None,
                           address: str | None = None, tenant: str | None = None) -> Outcome | None:
        """The answer to a command kept in memory (`status`, handlers.core.remembered) for someone already
        known, given on the event loop without the hop to a worker thread; None when it is not kept, or the
        store is not SQLite: the command then runs as any other (``execute``)."""
        if not remembered(text):
            return None
        started = time.perf_counter()
        version = self.version_now()
        if version is None:
            return None
        found = from_memory(self.ctx, platform, user_id, text, version, address, tenant)
        if found is None:
            return None
        reply, person_id = found
        # The metrics' children, looked up once (a look-up by labels takes a lock), for each of a few commands.
        name = text.strip().lower()
        children = self._remembered_metrics.get((platform, name))
        if children is None:
            children = self._remembered_metrics[(platform, name)] = (
                self.metrics.commands.labels(platform=platform, command=name, outcome="ok"),
                self.metrics.latency.labels(platform=platform))
        children[0].inc()
        children[1].observe(time.perf_counter() - started)
        return Outcome(reply, "ok", person_id, delivery_key=key)

    def version_now(self) -> int | None:
        """The store's version row, read on the calling thread (the event loop): on SQLite only, where it is
        a read of one row of a local file on a connection of its own that never waits for a lock (WAL: a
        reader does not wait for writers; when it would have to, None). Elsewhere None: a query over the
        network would hold up the event loop."""
        if self._version_reader is None:
            if not self._version_readable:
                return None
            try:
                reader = sqlite3.connect(self.engine.url.database, isolation_level=None, check_same_thread=False)
                reader.execute("PRAGMA busy_timeout=0")
                reader.execute("PRAGMA query_only=ON")
            except sqlite3.Error as exc:
                log.debug("no connection to read the version row on: %s", exc)
                return None
            self._version_reader = reader
        try:
            row = self._version_reader.execute(VERSION_SQL).fetchone()
        except sqlite3.Error as exc:
            log.debug("the version row could not be read at once (%s): the command runs in a thread", exc)
            return None
        return row[0] if row else None

    def close(self) -> None:
        """Close the store's connections (the server's end, or before it forks); the next use opens new ones."""
        if self._version_reader is not None:
            self._version_reader.close()
            self._version_reader = None
        self.engine.dispose()

    async def queue_reply(self, platform: str, target_kind: str, target: str, reply: Reply, key: str,
                          thread_id: str | None = None) -> bool:
        """Queue an answer that cannot go back in the HTTP response (to a Slack event, a Teams message):
        durable like any other message. False if the same delivery already queued one."""
        return await asyncio.to_thread(self._queue_reply, platform, target_kind, target,
                                       privacy.storable(reply), key, thread_id)

    def _queue_reply(self, platform, target_kind, target, reply, key, thread_id) -> bool:
        try:
            with self.ctx.sessions.begin() as s:
                Work(self.ctx, s, None).send(platform, target_kind, target, reply, key, "reply", thread_id)
        except IntegrityError:
            return False
        self.deliverer.kick()
        return True


def command_name(text: str) -> str:
    """The first word, for metrics labels; never free text, so the label set stays small."""
    try:
        words = split_words(text)
    except UserError:
        return "invalid"
    first = words[0].lower() if words else "help"
    return first if first in ROUTES else "unknown"


def connected_platforms(env=os.environ) -> frozenset[str]:
    """The chat platforms the environment connects svcbot to (the server refuses half a Slack set-up)."""
    return frozenset(name for name, on in (("slack", bool(env.get("SLACK_BOT_TOKEN"))),
                                           ("teams", teams_mode(env) is not None)) if on)


def secret_key(sessions) -> bytes:
    """The key of the hashes svcbot keeps instead of a person: SVCBOT_SECRET_KEY, else one made at first
    start and kept in the store. An anonymous survey's hashes also take a key of the survey's own, erased
    when it closes (handlers.surveys.privacy)."""
    if os.environ.get("SVCBOT_SECRET_KEY"):
        return os.environ["SVCBOT_SECRET_KEY"].encode()
    with sessions.begin() as s:
        row = s.get(Setting, "secret_key")
        if row is None:
            row = Setting(key="secret_key", value=secrets.token_hex(32))
            s.add(row)
        return row.value.encode()


def answered_privately(result: Outcome, text: str, form: str | None = None) -> bool:
    """True when the answer to a survey answer may only travel in the response to the request itself:
    an anonymous answer's thanks, or any refusal of an answer. Queued, it would be a stored message
    to the person, or to a chat that names them."""
    return result.reply.anonymous or (record.is_answer(text, form) and result.outcome != "ok")

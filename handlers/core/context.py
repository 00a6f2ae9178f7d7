"""The platform-neutral path every front end uses: who asked, what they asked, and what to answer.

A handler validates first, then changes state inside ``ctx.change(cmd)``: the state change, the audit
record, the outbox rows and the delivery's dedupe key commit together or not at all.
"""
from __future__ import annotations

import difflib
import hashlib
import hmac
import logging
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import Executable, Row, event, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from handlers.core import quiet_hours
from handlers.core.config import AppConfig
from handlers.core.remembered import VERSION, Remembered
from storage.db import read_only, utcnow
from storage.models import AuditRecord, Identity, OutboxMessage, ProcessedDelivery

log = logging.getLogger("svcbot")

PLATFORMS = ("slack", "teams")


class UserError(Exception):
    """Something the person can fix: shown to them with a right example; nothing changed."""

    def __init__(self, message: str, example: str | None = None):
        super().__init__(message)
        self.message = message
        self.example = example


class Refused(UserError):
    """Their role does not allow it; told privately, nothing changed."""


class FormInvalid(UserError):
    """A form's fields are wrong: ``errors`` maps each field to what is wrong with it, so the form can
    be shown again with the messages beside the fields and what was typed kept."""

    def __init__(self, errors: dict[str, str], form: "Form | None" = None, example: str | None = None):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()), example)
        self.errors = errors
        self.form = form


class AlreadyHandled(Exception):
    """This exact delivery (a retried event, a double click) was acted on before."""


@dataclass
class Actor:
    person_id: str
    name: str
    platform: str  # slack | teams | console | api
    roles: frozenset[str] = frozenset()
    timezone: str = "UTC"
    client: str | None = None  # the API client that acted (as itself, or on this person's behalf)


SYSTEM = Actor(person_id="svcbot", name="svcbot", platform="system")

@dataclass
class Command:
    actor: Actor
    text: str
    # A unique key for this delivery (Slack event id, trigger id, Teams activity id): a retry with
    # the same key changes nothing a second time.
    delivery_key: str | None = None
    via: str = "text"  # text | button | reaction | card | form | api: how it was given, for the audit
    # The store's version row as read when the command began, for an answer kept in memory (ctx.remembered);
    # None: read the store.
    store_version: int | None = None


@dataclass
class Field:
    label: str
    value: str


@dataclass
class Button:
    label: str
    # A button runs ordinary command words, so it goes through the same grammar and checks as typing them.
    run: str
    style: str | None = None  # primary | danger


@dataclass
class Section:
    title: str = ""
    text: str = ""
    fields: list[Field] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)


@dataclass
class Image:
    """A picture that goes with a message (a report's chart): a PNG as base64, with a text alternative.
    Teams shows it in the card; Slack gets it as an uploaded file beside the message."""

    name: str  # file name: attainment.png
    title: str
    alt: str  # what the picture shows, for screen readers and text surfaces
    png: str  # base64


@dataclass
class Choice:
    value: str
    label: str


@dataclass
class Input:
    id: str
    label: str
    kind: str = "text"  # text | long | choice | multi
    choices: list[Choice] = field(default_factory=list)
    value: str | list[str] = ""
    required: bool = False
    hint: str = ""
    error: str = ""


@dataclass
class Form:
    """Fields to fill in: a Slack modal, an Adaptive Card with inputs, or a one-line example in text."""

    name: str
    title: str
    inputs: list[Input]
    submit: str = "Submit"
    context: dict[str, Any] = field(default_factory=dict)  # carried back with the answers
    example: str = ""  # the same thing as one line of text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Form":
        inputs = [Input(**{**i, "choices": [Choice(**c) for c in i["choices"]]}) for i in data["inputs"]]
        return cls(**{**data, "inputs": inputs})


@dataclass
class Reply:
    title: str
    text: str = ""
    sections: list[Section] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    footer: str = ""
    tone: str = "info"  # info | ok | warning | error
    private: bool = True
    form: Form | None = None
    # It answers an anonymous act: shown in the answer to the request itself, never sent on to an
    # address that names the person (a direct message), so that no stored row links them to it.
    anonymous: bool = False
    images: list[Image] = field(default_factory=list)
    # Rendered with this template of each platform (a digest) instead of the generic message; ``data``
    # gives a deployment's own templates the numbers behind the text.
    template: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # A button's answer that replaces the card the button was on (home's Refresh), where the platform can.
    in_place: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Reply":
        data = dict(data)
        data["sections"] = [Section(title=s["title"], text=s["text"], fields=[Field(**f) for f in s["fields"]],
                                    buttons=[Button(**b) for b in s["buttons"]]) for s in data.get("sections", [])]
        data["buttons"] = [Button(**b) for b in data.get("buttons", [])]
        data["form"] = Form.from_dict(data["form"]) if data.get("form") else None
        data["images"] = [Image(**i) for i in data.get("images", [])]
        return cls(**data)

    def plain(self) -> str:
        """The one-line text notifications and screen readers fall back to."""
        return f"{self.title}: {self.text}" if self.text else self.title


def unknown_word(before: str, word: str, rest: list[str], known: Iterable[str], example: str) -> UserError:
    """An unknown command word or verb (``word``, after the words ``before``). When a known one is close,
    the message asks "Did you mean …?" and the example is the command as typed with that word put right."""
    said, close = f"{before} {word}".strip(), nearest(word, known)
    if close is None:
        return UserError(f"I don't know '{said}'.", example)
    meant = f"{before} {close}".strip()
    return UserError(f"I don't know '{said}'. Did you mean `{meant}`?", retyped(meant, rest))


def nearest(word: str, known: Iterable[str]) -> str | None:
    """The known word ``word`` is most likely a typo of, if any."""
    close = difflib.get_close_matches(word.lower(), list(known), n=1)
    return close[0] if close else None


def retyped(start: str, rest: list[str]) -> str:
    """A command as it was typed after ``start``, quoting again the words that held spaces."""
    return " ".join([start, *(f'"{w}"' if not w or " " in w else w for w in rest)]).strip()


def error_reply(message: str, example: str | None = None) -> Reply:
    return Reply(title="That didn't work", text=message, tone="error",
                 footer=f"Try: {example}" if example else "")


@dataclass
class Context:
    config: AppConfig
    sessions: sessionmaker[Session]
    now: Callable[[], datetime] = utcnow
    # Called after a commit that wrote outbox rows, so delivery need not wait for the next sweep.
    on_outbox: Callable[[], None] = lambda: None
    # The key of every keyed hash svcbot stores in place of a person (see ``pseudonym``).
    secret: bytes = field(default_factory=lambda: os.urandom(32))
    # The chat platforms this deployment is connected to: direct messages prefer them.
    connected: frozenset[str] = frozenset(PLATFORMS)
    _readers: sessionmaker[Session] | None = field(default=None, init=False, repr=False, compare=False)
    # Answers kept in memory, each good for one version of the store (handlers.core.remembered).
    remembered: Remembered = field(default_factory=Remembered, repr=False, compare=False)

    def pseudonym(self, *parts: object) -> str:
        """A keyed hash of the parts: equal for equal parts, and no way back to them without the key."""
        message = "\x1f".join(map(str, parts)).encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:40]

    def reader(self) -> Session:
        """A session for reads alone: on SQLite it takes no write lock, so the many requests that only
        read (``status``) do not queue behind each other and every sweep. Writes go through ``change``."""
        return self._read_only()()

    def read(self, statement: Executable, params: dict[str, Any] | None = None) -> list[Row]:
        """One statement's rows, read as plain columns on a connection of its own that takes no write
        lock: for the reads of every request, where an ORM session costs more than the query. A
        statement built once (with ``bindparam``) also saves building it again each time."""
        with self._read_only().kw["bind"].connect() as conn:
            return conn.execute(statement, params).all()

    def store_version(self) -> int | None:
        """The number of the store's version row: it moves on with every committed write to the service
        states or the people (storage.models_answers)."""
        rows = self.read(VERSION)
        return rows[0][0] if rows else None

    def _read_only(self) -> sessionmaker[Session]:
        if self._readers is None:
            self._readers = sessionmaker(read_only(self.sessions.kw["bind"]), class_=ReadSession,
                                         expire_on_commit=False)
        return self._readers

    def roles_of(self, person_id: str) -> frozenset[str]:
        r = self.config.roles
        roles = {name for name in ("service_managers", "cab", "emergency_cab") if person_id in getattr(r, name)}
        return frozenset(roles)

    @contextmanager
    def change(self, cmd: Command) -> Iterator["Work"]:
        work = None
        try:
            with self.sessions.begin() as session:
                if cmd.delivery_key:
                    session.add(ProcessedDelivery(key=cmd.delivery_key, at=self.now()))
                    session.flush()
                work = Work(self, session, cmd.actor)
                yield work
        except IntegrityError as exc:
            if cmd.delivery_key and "processed_deliveries" in str(exc.orig):
                raise AlreadyHandled(cmd.delivery_key) from None
            raise
        if work and work.queued:
            self.on_outbox()


class ReadSession(Session):
    """What ``Context.reader`` gives: refuses to flush, since its transaction holds no write lock."""


@event.listens_for(ReadSession, "before_flush")
def _refuse_writes(session, _flush_context, _instances) -> None:
    raise RuntimeError("a reader session does not write: use ctx.change()")


class Work:
    """One transaction's worth of change, audit and outgoing messages."""

    def __init__(self, ctx: Context, session: Session, actor: Actor):
        self.ctx, self.session, self.actor = ctx, session, actor
        self.queued = 0
        self.now = ctx.now()

    def audit(self, action: str, subject: str, *, without_actor: bool = False, **detail: Any) -> None:
        """Who did what, when and from where; ``without_actor`` leaves out who (an anonymous answer)."""
        self.session.add(AuditRecord(at=self.now, person_id=None if without_actor else self.actor.person_id,
                                     platform=self.actor.platform, client=self.actor.client, action=action,
                                     subject=subject, detail=detail))

    def send(self, platform: str, target_kind: str, target: str, message: Reply, key: str,
             subject: str = "", thread_id: str | None = None, anchor_key: str | None = None,
             not_before: datetime | None = None) -> None:
        """Queue a message. With ``anchor_key`` it goes into the thread of that row's delivered message;
        with ``not_before`` it waits till then (its age, for ``delivery.give_up_hours``, counts from then)."""
        release = max(not_before or self.now, self.now)
        # Block Kit shows no pictures it cannot fetch: Slack gets them as files, shared in the same
        # conversation once the message is there.
        files = platform == "slack" and message.images and target_kind in ("channel", "person")
        self.session.add(OutboxMessage(
            dedupe_key=key, platform=platform, target_kind=target_kind, target=target, thread_id=thread_id,
            message=(replace(message, images=[]) if files else message).to_dict(), subject=subject,
            status="pending", attempts=0, created_at=release, next_attempt_at=release, anchor_key=anchor_key))
        self.queued += 1
        if files:
            self.send(platform, "files", target, Reply(title=message.title, images=message.images),
                      f"{key}:files", subject, anchor_key=key, not_before=not_before)

    def edit(self, anchor_key: str, message: Reply, key: str) -> None:
        """Replace the message another outbox row posted with this one (chat.update, a Teams update).

        Only the newest content matters: if the post has not gone out yet it simply goes out with the new
        content, and edits still waiting are superseded by this one."""
        anchor = self.session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == anchor_key))
        if anchor is None:
            return
        body = message.to_dict()
        still_waiting = self.session.execute(
            update(OutboxMessage).where(OutboxMessage.id == anchor.id, OutboxMessage.status == "pending",
                                        OutboxMessage.maybe_sent.is_(False))
            .values(message=body).execution_options(synchronize_session=False)).rowcount
        if still_waiting:
            self.queued += 1
            return
        self.session.execute(
            update(OutboxMessage).where(OutboxMessage.anchor_key == anchor_key, OutboxMessage.target_kind == "edit",
                                        OutboxMessage.status == "pending")
            .values(status="superseded").execution_options(synchronize_session=False))
        self.send(anchor.platform, "edit", anchor.target, message, key, anchor.subject, anchor_key=anchor_key)

    def reply_in_thread(self, anchor_key: str, message: Reply, key: str) -> None:
        """Answer in the thread of the message another outbox row posted, once it is delivered."""
        anchor = self.session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == anchor_key))
        if anchor is not None:
            self.send(anchor.platform, anchor.target_kind, anchor.target, message, key, anchor.subject,
                      anchor_key=anchor_key)

    def post_to_channel(self, channel: str, message: Reply, key: str, subject: str = "") -> list[str]:
        """Post to a logical channel on every platform it is mapped to; returns those platforms."""
        target = self.ctx.config.channels[channel]
        platforms = []
        for platform in PLATFORMS:
            address = getattr(target, platform)
            if address:
                self.send(platform, "channel", address, message, f"{key}:{platform}:{address}", subject)
                platforms.append(platform)
        return platforms

    def message_person(self, person_id: str, message: Reply, key: str, subject: str = "",
                       hold_in_quiet_hours: bool = False, supersedes: str | None = None,
                       useful_until: datetime | None = None) -> list[str]:
        """A direct message on the one platform the person prefers (see ``direct_platform``); returns the
        outbox keys queued.

        ``hold_in_quiet_hours`` (reminders): written now, delivered once the person's quiet hours end —
        unless that is not before ``useful_until`` (a change's start), when the reminder is not sent at all.
        ``supersedes``: a key prefix of earlier reminders of the same thing; one still held for this person
        is replaced by this one, so a night of reminders becomes one in the morning."""
        identities = self.session.scalars(select(Identity).where(Identity.person_id == person_id)).all()
        release = quiet_hours.release_at(self.ctx.config, person_id, self.now) if hold_in_quiet_hours else None
        if release and useful_until and release >= useful_until:
            log.info("reminder %s to %s not sent: their quiet hours last past %s", key, person_id, useful_until)
            return []
        platform = direct_platform(self.ctx, person_id, {ident.platform for ident in identities})
        keys = []
        for ident in identities:
            if ident.platform != platform:
                continue
            if supersedes:
                self.session.execute(
                    update(OutboxMessage).where(
                        OutboxMessage.dedupe_key.startswith(supersedes, autoescape=True),
                        OutboxMessage.platform == ident.platform, OutboxMessage.target_kind == "person",
                        OutboxMessage.target == ident.external_id, OutboxMessage.status == "pending",
                        OutboxMessage.attempts == 0, OutboxMessage.next_attempt_at > self.now)
                    .values(status="superseded").execution_options(synchronize_session=False))
            keys.append(f"{key}:{ident.platform}:{ident.external_id}")
            self.send(ident.platform, "person", ident.external_id, message, keys[-1], subject, not_before=release)
        return keys


def direct_platform(ctx: Context, person_id: str, platforms: set[str]) -> str | None:
    """Where a person's direct messages go: their ``prefer`` from app.yaml, else the first of PLATFORMS;
    a platform this deployment is not connected to comes after one it is."""
    person = ctx.config.person(person_id)
    prefer = person.prefer if person else None
    known = [p for p in PLATFORMS if p in platforms]
    return min(known, key=lambda p: (p not in ctx.connected, p != prefer, PLATFORMS.index(p)), default=None)


@contextmanager
def reading(ctx: Context, session: Session | None = None) -> Iterator[Session]:
    """The session given, else one of its own that only reads (``Context.reader``). A reader called
    inside a transaction must read through that transaction's session, to see what it changed so far."""
    if session is not None:
        yield session
        return
    with ctx.reader() as own:
        yield own


def sweep_due(ctx: Context, model, actor: Actor, handle: Callable[[Work, Any, datetime], int],
              batch: int = 200) -> int:
    """Run ``handle`` on each row of ``model`` whose ``due_at`` has come, each in a savepoint of one
    transaction; returns the sum of what the handler returns. Replicas on PostgreSQL take different rows."""
    now = ctx.now()
    done = 0
    with ctx.sessions.begin() as session:
        query = select(model).where(model.due_at <= now).order_by(model.due_at).limit(batch)
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        work = Work(ctx, session, actor)
        for row in session.scalars(query).all():
            row_id = row.id
            try:
                with session.begin_nested():
                    done += handle(work, row, now)
            except IntegrityError:  # another sweep did it first
                log.info("%s %s was handled by another sweep", model.__tablename__, row_id)
    if done:
        ctx.on_outbox()
    return done


def batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]

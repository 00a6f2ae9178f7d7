"""Requests that only read (`status`, and who is asking) take no write lock, and always show what is
committed: on SQLite they read their own snapshot while a writer works."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import update

from bot import render
from handlers.core.context import Command, Context
from handlers.core.people import resolve_actor
from handlers.router import dispatch
from storage.db import make_engine, session_factory
from storage.models import ServiceStatus

# Far below the store's busy timeout (30 s): a read that waited for the writer would not finish in time.
ANSWER_WITHIN_SECONDS = 10


def status_of(ctx, slack_user: str, text: str = "status"):
    actor = resolve_actor(ctx, "slack", slack_user, "")
    return dispatch(ctx, Command(actor=actor, text=text))


def answered_while(ctx, hold, ask):
    """Run ``ask`` in a thread while ``hold`` (a write transaction, uncommitted) is open; its result, or
    None if it did not finish within ANSWER_WITHIN_SECONDS."""
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("value", ask()), daemon=True)
    with ctx.sessions() as writer:
        writer.begin()
        hold(writer)
        worker.start()
        worker.join(ANSWER_WITHIN_SECONDS)
        in_time = not worker.is_alive()
        writer.rollback()
    worker.join(60)  # the writer is gone: let a waiting reader end before the store is torn down
    return result.get("value") if in_time else None


def test_status_is_answered_while_another_transaction_writes_and_shows_only_what_is_committed(ctx):
    tom = ctx.config.person("tom")
    assert status_of(ctx, tom.slack, "service set payments degraded Card payments are slow")[1] == "ok"

    def hold(writer):  # a change under way: written, not committed
        writer.execute(update(ServiceStatus).where(ServiceStatus.service_id == "payments")
                       .values(state="major-outage", message="not committed"))
        writer.flush()

    answered = answered_while(ctx, hold, lambda: status_of(ctx, tom.slack))
    assert answered is not None, "status waited for a writer"
    reply, outcome = answered
    assert outcome == "ok"
    text = render.text(reply)
    assert "payments`, tier 1) — degraded: Card payments are slow" in text
    assert "not committed" not in text and "major-outage" not in text

    one = answered_while(ctx, hold, lambda: status_of(ctx, tom.slack, "status payments"))
    assert one is not None and one[1] == "ok" and "Card payments are slow" in render.text(one[0])


def test_someone_new_is_still_registered_on_first_contact_and_known_after(ctx):
    first = resolve_actor(ctx, "slack", "U0NEWCOMER", "New Comer")
    again = answered_while(ctx, lambda writer: writer.execute(update(ServiceStatus).values(message="x")),
                           lambda: resolve_actor(ctx, "slack", "U0NEWCOMER", "ignored now"))
    assert again == first and first.name == "New Comer"


def test_a_reader_session_refuses_to_write(ctx):
    with ctx.reader() as s:
        s.add(ServiceStatus(service_id="payments", state="degraded", message="", since=ctx.now()))
        with pytest.raises(RuntimeError, match="does not write"):
            s.flush()


def test_a_change_through_another_replica_shows_in_status_at_once(ctx, runtime, database_url):
    """Nothing of `status` is kept between requests but its rendering, keyed by what the reply says."""
    engine = make_engine(database_url)
    other = Context(config=ctx.config, sessions=session_factory(engine), now=ctx.now, secret=ctx.secret)
    try:
        tom = ctx.config.person("tom")
        before = render.slack_message(status_of(ctx, tom.slack)[0])
        assert status_of(other, tom.slack, "service set payments major-outage Card payments fail")[1] == "ok"
        after = render.slack_message(status_of(ctx, tom.slack)[0])
        assert after != before
        assert "Card payments fail" in str(after) and "Card payments fail" not in str(before)
        assert status_of(other, tom.slack, "service set payments operational Fixed")[1] == "ok"
        back = status_of(ctx, tom.slack)[0]
        assert back.title == "All services operational" and "Fixed" in render.text(back)
    finally:
        engine.dispose()

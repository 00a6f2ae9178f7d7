"""`status` and who asked are kept in memory, each good for one number of the store's version row
(handlers.core.remembered): a change committed by one replica shows on the very next `status` of any other,
whichever way it was written, and what is kept is used again only while nothing it depends on changed."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, update

from bot import render
from bot.runtime import Runtime
from handlers.services.status import OVERVIEW_KEY
from storage.models import Identity, ServiceStatus
from tests.conftest import config_from

TOM = "U0TOM0002"


@pytest.fixture
def replica(runtime, database_url, config_file):
    """A second server process's runtime on the same store: its own engine, its own memory."""
    other = Runtime(config_from(config_file), database_url)
    yield other
    other.close()


def ask(rt: Runtime, text: str = "status", user: str = TOM):
    return asyncio.run(rt.execute("slack", user, text))


def kept(rt: Runtime):
    """What this runtime keeps for `status` at the store's version now (None: nothing current)."""
    return rt.ctx.remembered.get(OVERVIEW_KEY, rt.ctx.store_version())


def from_memory(rt: Runtime, user: str = TOM):
    """The answer the event loop would give at once, with no thread; only on SQLite (elsewhere a query
    would hold up the loop, and the command runs in a thread, reading the version row there)."""
    return rt.answer_from_memory("slack", user, "status")


def on_sqlite(rt: Runtime) -> bool:
    return rt.engine.dialect.name == "sqlite"


def test_a_status_set_on_one_replica_shows_on_the_next_status_of_another(runtime, replica):
    for rt in (runtime, replica):
        first = ask(rt)
        assert first.outcome == "ok" and "payments`, tier 1) — operational" in render.text(first.reply)
        assert kept(rt) is first.reply
        assert ask(rt).reply is first.reply  # asked again with nothing changed: the same answer, kept
        if on_sqlite(rt):
            assert from_memory(rt).reply is first.reply

    assert ask(runtime, "service set payments major-outage Card payments are down").outcome == "ok"

    assert kept(replica) is None
    if on_sqlite(replica):
        assert from_memory(replica) is None
    after = ask(replica)
    assert "payments`, tier 1) — major-outage: Card payments are down" in render.text(after.reply)
    assert after.reply.title == "Some services are affected"
    assert kept(replica) is after.reply
    if on_sqlite(replica):
        assert from_memory(replica).reply is after.reply


def test_a_write_to_the_states_by_any_path_moves_the_version_on(runtime, replica):
    ask(runtime)
    assert kept(runtime) is not None
    with replica.ctx.sessions.begin() as s:  # not through a handler: the store's triggers still see it
        s.execute(update(ServiceStatus).where(ServiceStatus.service_id == "payments").values(state="degraded"))
    # No row for payments yet: an UPDATE of nothing. Only what was written may move the version on
    # (SQLite counts rows, PostgreSQL statements), and the answer must be the same either way.
    assert "payments`, tier 1) — operational" in render.text(ask(runtime).reply)

    ask(replica, "service set payments degraded Slow")
    assert "— degraded: Slow" in render.text(ask(runtime).reply)
    with replica.ctx.sessions.begin() as s:
        s.execute(update(ServiceStatus).where(ServiceStatus.service_id == "payments")
                  .values(state="maintenance", message="Patching"))
    assert "— maintenance: Patching" in render.text(ask(runtime).reply)
    with replica.ctx.sessions.begin() as s:
        s.execute(delete(ServiceStatus).where(ServiceStatus.service_id == "payments"))
    assert "payments`, tier 1) — operational" in render.text(ask(runtime).reply)


def test_who_asked_is_read_again_once_their_account_changed_elsewhere(runtime, replica):
    assert ask(runtime).person_id == "tom"
    assert ask(runtime).person_id == "tom"
    with replica.ctx.sessions.begin() as s:  # the account now belongs to someone else
        s.execute(update(Identity).where(Identity.platform == "slack", Identity.external_id == TOM)
                  .values(person_id="priya"))
    if on_sqlite(runtime):
        assert from_memory(runtime) is None
    assert ask(runtime).person_id == "priya"
    if on_sqlite(runtime):
        assert from_memory(runtime).person_id == "priya"


def test_someone_new_is_registered_before_anything_is_answered_from_memory(runtime):
    ask(runtime)  # `status` itself is kept
    newcomer = "U0NEWCOMER"
    if on_sqlite(runtime):
        assert from_memory(runtime, newcomer) is None  # nobody knows them yet: they must be written first
    assert ask(runtime, user=newcomer).person_id == "slack-u0newcomer"  # written: the version moved on
    assert kept(runtime) is None
    assert ask(runtime, user=newcomer).person_id == "slack-u0newcomer"  # read again, and kept
    if on_sqlite(runtime):
        assert from_memory(runtime, newcomer).person_id == "slack-u0newcomer"

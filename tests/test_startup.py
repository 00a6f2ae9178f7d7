"""Replicas starting together on one empty store: each comes up, and what app.yaml seeds is there once."""
import threading

import pytest
from sqlalchemy import func, select

from bot.runtime import Runtime
from handlers.core.config_loading import load_config
from storage.models import Identity, Person, Setting

REPLICAS = 4


@pytest.mark.empty_store
def test_replicas_starting_together_all_come_up(database_url, config_file, monkeypatch):
    monkeypatch.delenv("SVCBOT_SECRET_KEY", raising=False)
    config = load_config(str(config_file))
    gate = threading.Barrier(REPLICAS)
    started, failed = [], []

    def start():
        gate.wait()
        try:
            started.append(Runtime(config, database_url))
        except Exception as exc:  # noqa: BLE001 - the test reports what a replica died of
            failed.append(exc)

    threads = [threading.Thread(target=start) for _ in range(REPLICAS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert failed == []
    assert len(started) == REPLICAS
    # One secret key for all of them: a hash made by one replica is tested by another.
    assert len({rt.ctx.secret for rt in started}) == 1
    with started[0].ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Person)) == len(config.people)
        accounts = sum(bool(p.slack) + bool(p.teams) for p in config.people)
        assert s.scalar(select(func.count()).select_from(Identity)) == accounts
        assert s.scalar(select(func.count()).select_from(Setting).where(Setting.key == "secret_key")) == 1
    for rt in started:
        rt.engine.dispose()


def test_the_declared_head_revision_is_alembics():
    from alembic.script import ScriptDirectory

    from storage.db import HEAD_REVISION, alembic_config, make_engine
    engine = make_engine("sqlite://")
    assert ScriptDirectory.from_config(alembic_config(engine)).get_heads() == [HEAD_REVISION]
    engine.dispose()


@pytest.mark.empty_store
def test_a_store_behind_is_migrated_and_one_up_to_date_is_left_to_itself(database_url, config_file, monkeypatch):
    from alembic import command
    from alembic.script import ScriptDirectory

    from storage.db import HEAD_REVISION, alembic_config, current_revisions, make_engine
    engine = make_engine(database_url)
    cfg = alembic_config(engine)
    head = ScriptDirectory.from_config(cfg).get_revision("head")
    with engine.begin() as conn:  # the store as the release before the newest migration left it
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, head.down_revision)
    config = load_config(str(config_file))
    Runtime(config, database_url).engine.dispose()
    with engine.connect() as conn:
        assert current_revisions(conn) == {HEAD_REVISION} == {head.revision}

    def no_migration(*args, **kwargs):
        raise AssertionError("alembic ran on a store already up to date")
    monkeypatch.setattr(command, "upgrade", no_migration)
    Runtime(config, database_url).engine.dispose()
    engine.dispose()

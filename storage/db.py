"""The engine, sessions and migrations. SQLite embedded by default; PostgreSQL for several replicas."""
from __future__ import annotations

import ast
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_URL = "sqlite:///svcbot.db"
MIGRATIONS = Path(__file__).parent / "migrations"
# Held while a replica prepares the store, so that replicas starting together take turns.
STARTUP_LOCK_ID = 0x5FCB07


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def database_url() -> str:
    return os.environ.get("SVCBOT_DATABASE_URL") or DEFAULT_URL


def make_engine(url: str | None = None) -> Engine:
    url = url or database_url()
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_conn, _record):
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (see below).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Take the write lock up front: a read-then-write transaction that started deferred
            # fails at once when another writer got in between, instead of waiting its turn.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


@contextmanager
def startup_lock(engine: Engine):
    """Let one process at a time migrate the schema and write what app.yaml seeds. PostgreSQL only:
    SQLite's writers already take turns (every transaction begins IMMEDIATE)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": STARTUP_LOCK_ID})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": STARTUP_LOCK_ID})
            conn.commit()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (under ``startup_lock`` when replicas may start together)."""
    with engine.begin() as conn:
        # Most starts find the schema up to date. Alembic would import itself and every migration script
        # to find that out, a large part of the start-up; reading the version table is enough.
        heads = head_revisions()
        if heads is not None and current_revisions(conn) == heads:
            return
        from alembic import command
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def current_revisions(conn: Connection) -> set[str]:
    """The revisions the store is at, as alembic records them; none for an empty store."""
    if not inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def head_revisions() -> set[str] | None:
    """The newest revisions of the migration scripts, read from their ``revision`` and ``down_revision``
    without running them; None if a script does not state them plainly (then alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        stated = _literal_assignments(path, ("revision", "down_revision"))
        if not isinstance(stated.get("revision"), str) or "down_revision" not in stated:
            return None
        revisions.add(stated["revision"])
        down = stated["down_revision"]
        parents.update([down] if isinstance(down, str) else down or ())
    return revisions - parents


def _literal_assignments(path: Path, names: tuple[str, ...]) -> dict:
    """The module-level ``name = <literal>`` (or ``name: type = <literal>``) assignments of a script."""
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                pass
    return found

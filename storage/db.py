"""The engine, sessions and migrations. SQLite embedded by default; PostgreSQL for several replicas."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("svcbot")

DEFAULT_URL = "sqlite:///svcbot.db"
MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration in migrations/versions; a new migration moves it on (tests/test_startup.py checks).
HEAD_REVISION = "0016"
# The tables SQLite's full-text engine keeps for the knowledge library's index (FTS5 and its shadow
# tables): made by migration 0009, not models of their own.
FULL_TEXT_TABLES = frozenset({"kb_search", "kb_search_data", "kb_search_idx", "kb_search_docsize", "kb_search_config"})
BUSY_TIMEOUT_MS = 30000  # how long an SQLite statement waits for another connection's lock
# Held while a replica prepares the store, so that replicas starting together take turns.
STARTUP_LOCK_ID = 0x5FCB07
# An execution option: this connection's transactions only read (see ``read_only``).
READ_ONLY = "svcbot_read_only"


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
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # Deleted rows are overwritten, not left in free pages: what closing an anonymous survey
            # deletes must not stay readable in the file.
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Take the write lock up front: a read-then-write transaction that started deferred
            # fails at once when another writer got in between, instead of waiting its turn.
            # A transaction that only reads needs no lock: in WAL mode it reads its own snapshot
            # while a writer works, so readers neither wait for writers nor for each other.
            # Straight to the driver: it runs for every transaction, and SQLAlchemy's statement machinery
            # made up a sixth of a short read's cost.
            read = conn.get_execution_options().get(READ_ONLY)
            conn.connection.dbapi_connection.execute("BEGIN" if read else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def read_only(engine: Engine) -> Engine:
    """The same engine and pool, for transactions that only read: on SQLite they begin deferred, taking
    no write lock (a write through it could fail at once with "database is locked"); elsewhere the same."""
    return engine.execution_options(**{READ_ONLY: True})


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
        # Most starts find the schema up to date: reading the version table says so without importing
        # alembic and every migration script, a large part of the start-up.
        if current_revisions(conn) == {HEAD_REVISION}:
            return
        from alembic import command
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def empty_write_ahead_log(engine) -> bool:
    """On SQLite, move the write-ahead log into the file and empty it; whether that was done.

    It does not wait: a reader still open (a sweep reading on while it closes surveys, a request) would
    otherwise hold the caller for the whole busy timeout. The retention sweep tries again later."""
    if engine.dialect.name != "sqlite":
        return True
    try:
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA busy_timeout=0")
            busy = raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            raw.driver_connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            raw.close()
        return not busy
    except Exception as exc:  # noqa: BLE001 - a later checkpoint does it; what was committed stands
        log.warning("could not checkpoint the write-ahead log: %s", exc)
        return False


def current_revisions(conn: Connection) -> set[str]:
    """The revisions the store is at, as alembic records them; none for an empty store."""
    if not inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())

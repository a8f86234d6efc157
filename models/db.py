"""The engine for ``DATABASE_URL``: SQLite (WAL, foreign keys on) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Insert, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, create_engine

SQLITE_BEGIN = "rentan_sqlite_begin"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (SQLAlchemy would pick psycopg2)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def upsert_into(table: Table, dialect: str) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that takes ON CONFLICT clauses: one statement instead of a look-up and a write,
    for the idempotent writes every step makes. SQLite (3.24+) and PostgreSQL share the syntax."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


@functools.cache
def insert_new(table: Table, *, key: str, dialect: str) -> Insert:
    """INSERT the parameters it is executed with, unless ``table`` holds a row with the same
    unique ``key`` already.

    Built once per table and dialect, the values given at execution (``sql.execute(stmt,
    values)``): values baked into a statement (``.values(...)``) make SQLAlchemy build a bind
    parameter per value and a cache key over all of them on every call, which was most of the
    projection writer's CPU in the bench's profile."""
    return upsert_into(table, dialect).on_conflict_do_nothing(index_elements=[key])


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and foreign keys. Its errors
    never carry the statement's parameters: a row's values are personal data."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # SQLite's own BEGIN is deferred: two writers could both read a ceiling and then both
        # write. Write transactions (``session_scope``) BEGIN IMMEDIATE, taking the write lock up
        # front, which serializes budget commits and audit appends; reads stay deferred so they
        # never block a writer (WAL).
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        hide_parameters=True,
        **kwargs,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling would defeat BEGIN IMMEDIATE; let SQLAlchemy drive it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
    # On the driver itself: SQLAlchemy's execution context for this one statement cost as much
    # as SQLite's own work for it, at every transaction (models/prepared.py).
    connection.connection.driver_connection.execute(f"BEGIN {mode}")


_write_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_write_locks_guard = threading.Lock()


def _writer_gate(engine: Engine) -> AbstractContextManager[object]:
    """On SQLite, one write transaction per process at a time.

    SQLite has one writer; a thread that finds the file locked backs off in sleeps of up to
    100 ms (its busy handler), however soon the lock frees (the bench's first profile: 37% of
    the worker's samples inside BEGIN IMMEDIATE). The worker now writes from one thread
    (models/writer.py); the API's threads (budget commits, refusal audits) still write
    concurrently, and queue here on a Python lock instead, taking the file's lock the moment it
    is free. Only other processes still contend for the file. PostgreSQL runs writers
    concurrently: no gate there.
    """
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _write_locks_guard:
        lock = _write_locks.get(engine)
        if lock is None:
            lock = _write_locks[engine] = threading.Lock()
    return lock


def write_connection(engine: Engine) -> Connection:
    """A connection to keep for many write transactions (``session_scope(connection=...)``):
    its transactions BEGIN IMMEDIATE on SQLite, as ``session_scope``'s own do."""
    return engine.connect().execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})


@contextmanager
def session_scope(engine: Engine, *, connection: Connection | None = None) -> Iterator[Session]:
    """A write transaction: commits on success, rolls back on error; IMMEDIATE on SQLite.

    On ``connection`` (from ``write_connection``) when given: a writer that commits hundreds of
    times a second keeps one, as checking one out of the pool and back for each transaction was
    about 40% of a one-write transaction's CPU."""
    with _writer_gate(engine):
        if connection is None:
            session = Session(engine, expire_on_commit=False)
            session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
        else:
            # The session begins the transaction on the connection itself, at once (even a
            # write that turns out to touch nothing holds SQLite's lock until its commit), and
            # so commits or rolls it back as its own.
            session = Session(bind=connection, expire_on_commit=False)
            session.connection()
        with session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

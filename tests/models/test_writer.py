"""The group-commit writer: many callers' writes per transaction, each caller's fate its own, and
the audit chain intact whatever a batch holds (run on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models import audit_chain, checkpoints
from models.audit_chain import AuditEntry, verify_chain
from models.db import make_engine
from models.tables import AuditEvent
from models.writer import GroupCommitWriter

T0 = dt.datetime(2026, 10, 1, 9, 0, tzinfo=dt.UTC)


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        event_key=f"enr_writer#{n}",
        occurred_at=T0 + dt.timedelta(seconds=n),
        actor="rentan",
        role="system",
        action=f"step_{n}",
        enrollment_id="enr_writer",
    )


def keys(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent.event_key).order_by(col(AuditEvent.id))))


class Refused(Exception):
    pass


@pytest.fixture
def engine(any_db_url: str) -> Iterator[Engine]:
    """This file's subject depends on the database (transactions, savepoints, the chain's
    lock): each test runs on SQLite and on PostgreSQL."""
    engine = make_engine(any_db_url)
    yield engine
    engine.dispose()


async def test_concurrent_writes_share_transactions_and_each_caller_gets_its_result(
    engine: Engine,
) -> None:
    writer = GroupCommitWriter(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    first_started = threading.Event()
    release = threading.Event()

    def write(n: int):  # type: ignore[no-untyped-def]
        def work(session: Session) -> int:
            if n == 0:  # hold the first batch open so the others queue up behind it
                first_started.set()
                release.wait(5)
            audit_chain.append(session, entry(n))
            return n * 10

        return work

    first = asyncio.ensure_future(writer.run(write(0)))
    assert await asyncio.to_thread(first_started.wait, 5)
    rest = [asyncio.ensure_future(writer.run(write(n))) for n in range(1, 41)]
    await asyncio.sleep(0.05)
    release.set()
    results = await asyncio.gather(first, *rest)

    assert results == [n * 10 for n in range(41)]
    # 41 writes, far fewer commits: the 40 queued ones went in one batch of 40.
    assert len(commits) == 2
    assert sorted(keys(engine)) == sorted(f"enr_writer#{n}" for n in range(41))
    with Session(engine) as session:
        assert verify_chain(session).ok


async def test_a_failing_write_fails_alone_and_leaves_the_chain_whole(engine: Engine) -> None:
    writer = GroupCommitWriter(engine)
    gate = threading.Event()

    def append(n: int, *, fail: bool = False):  # type: ignore[no-untyped-def]
        def work(session: Session) -> int:
            if n == 0:
                gate.wait(5)
            audit_chain.append(session, entry(n))
            if fail:  # after its audit row: the savepoint must take that row back
                raise Refused(f"write {n} refused")
            return n

        return work

    first = asyncio.ensure_future(writer.run(append(0)))
    await asyncio.sleep(0.05)
    batch = [asyncio.ensure_future(writer.run(append(n, fail=n == 3))) for n in range(1, 6)]
    await asyncio.sleep(0.05)
    gate.set()
    outcomes = await asyncio.gather(first, *batch, return_exceptions=True)

    assert outcomes[:3] == [0, 1, 2] and outcomes[4:] == [4, 5]
    assert isinstance(outcomes[3], Refused)
    assert keys(engine) == [f"enr_writer#{n}" for n in (0, 1, 2, 4, 5)]
    with Session(engine) as session:
        check = verify_chain(session)
    # Row 4 links to row 2, not to the rolled-back row 3: the cached chain head was dropped.
    assert check.ok and check.checked == 5


async def test_a_caller_that_gives_up_does_not_stop_the_writer(engine: Engine) -> None:
    """A local activity can be cancelled (timeout, shutdown) while its write is queued; the
    write may still commit, and every later write still goes through."""
    writer = GroupCommitWriter(engine)
    gate = threading.Event()

    def append(n: int):  # type: ignore[no-untyped-def]
        def work(session: Session) -> int:
            if n == 0:
                gate.wait(5)
            audit_chain.append(session, entry(n))
            return n

        return work

    first = asyncio.ensure_future(writer.run(append(0)))
    await asyncio.sleep(0.05)
    abandoned = asyncio.ensure_future(writer.run(append(1)))
    await asyncio.sleep(0.05)
    abandoned.cancel()
    gate.set()
    assert await first == 0
    later = await asyncio.wait_for(
        asyncio.gather(*(writer.run(append(n)) for n in range(2, 6))), timeout=10
    )
    assert later == [2, 3, 4, 5]
    with Session(engine) as session:
        assert verify_chain(session).ok


async def test_the_kept_connection_is_replaced_when_the_database_drops_it(
    postgres_url: str,
) -> None:
    """The writer keeps one connection while it runs; when PostgreSQL ends that session (a
    restart, an administrator), the next write fails once on it and lands on a fresh one."""
    engine = make_engine(postgres_url)
    try:
        writer = GroupCommitWriter(engine)

        def write(n: int):  # type: ignore[no-untyped-def]
            def work(session: Session) -> int:
                audit_chain.append(session, entry(n))
                pid: int = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
                return pid

            return work

        first_pid = await writer.run(write(1))
        with engine.connect() as admin:
            assert admin.exec_driver_sql(f"SELECT pg_terminate_backend({first_pid})").scalar()
        second_pid = await writer.run(write(2))
        third_pid = await writer.run(write(3))

        assert second_pid != first_pid  # the dead one was dropped...
        assert third_pid == second_pid  # ... and the fresh one kept
        assert keys(engine) == ["enr_writer#1", "enr_writer#2", "enr_writer#3"]
        with Session(engine) as session:
            assert verify_chain(session).ok
    finally:
        engine.dispose()


def _in_database_file(path: str) -> list[str]:
    """What the database file itself holds, ignoring the WAL (``immutable``: no WAL is read)."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
        return [row[0] for row in conn.execute("SELECT event_key FROM audit_event ORDER BY id")]


async def test_sqlite_writes_reach_the_database_file_between_writes_not_at_commit(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's commits never checkpoint (one write in a hundred paid for the copy); the
    writer thread copies the WAL into the file itself once its queue is empty."""
    path = tmp_path / "rentan.db"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        writer = GroupCommitWriter(engine)
        monkeypatch.setattr(checkpoints, "EVERY_S", 3600.0)  # no checkpoint yet
        monkeypatch.setattr(checkpoints, "OVERDUE_S", 3600.0)

        def append(n: int):  # type: ignore[no-untyped-def]
            def work(session: Session) -> int:
                audit_chain.append(session, entry(n))
                setting: int = (
                    session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
                )
                return setting

            return work

        assert await writer.run(append(1)) == 0  # this connection never checkpoints at commit
        assert _in_database_file(str(path)) == []  # the write is in the WAL only

        monkeypatch.setattr(checkpoints, "EVERY_S", 0.0)
        await writer.run(append(2))  # the queue is then empty and a checkpoint is due
        for _ in range(100):
            if _in_database_file(str(path)) == ["enr_writer#1", "enr_writer#2"]:
                break
            await asyncio.sleep(0.02)
        assert _in_database_file(str(path)) == ["enr_writer#1", "enr_writer#2"]
    finally:
        engine.dispose()


async def test_a_write_that_touches_nothing_leaves_no_transaction_open(engine: Engine) -> None:
    """On the kept connection, a batch whose writes issue no statement (a renewal with no
    successor reads nothing) still ends its transaction: no lock held, the next write runs."""
    writer = GroupCommitWriter(engine)
    assert await writer.run(lambda _session: 42) == 42
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        assert database is not None
        other = sqlite3.connect(database, timeout=0.5, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" if the writer held it
            other.execute("ROLLBACK")
        finally:
            other.close()

    def append(session: Session) -> None:
        audit_chain.append(session, entry(1))

    await writer.run(append)
    assert keys(engine) == ["enr_writer#1"]


async def test_on_begin_runs_first_in_every_transaction_a_retried_batch_too(
    engine: Engine,
) -> None:
    """The recorder takes the audit chain's lock there, before any write of the batch."""
    ran: list[str] = []
    writer = GroupCommitWriter(engine, on_begin=lambda _session: ran.append("begin"))
    gate = threading.Event()

    def append(n: int, *, fail: bool = False):  # type: ignore[no-untyped-def]
        def work(session: Session) -> int:
            if n == 0:
                gate.wait(5)
            ran.append(f"write {n}")
            audit_chain.append(session, entry(n))
            if fail:
                raise Refused(f"write {n} refused")
            return n

        return work

    first = asyncio.ensure_future(writer.run(append(0)))
    await asyncio.sleep(0.05)
    batch = [asyncio.ensure_future(writer.run(append(n, fail=n == 2))) for n in (1, 2, 3)]
    await asyncio.sleep(0.05)
    gate.set()
    outcomes = await asyncio.gather(first, *batch, return_exceptions=True)

    assert outcomes[:2] == [0, 1] and outcomes[3] == 3
    assert isinstance(outcomes[2], Refused)
    # The first write alone; the batch, stopped by write 2; the batch again with savepoints.
    assert ran == [
        *("begin", "write 0"),
        *("begin", "write 1", "write 2"),
        *("begin", "write 1", "write 2", "write 3"),
    ]

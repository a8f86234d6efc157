"""Group commit: one thread writes the projection, many callers' writes per transaction.

Every enrollment step is a small write (the row, a decision, an audit entry) from a local
activity. One transaction each meant 32 threads queueing for SQLite's single writer, and on
PostgreSQL for the audit chain's lock, with every commit paid alone. Here a caller awaits
``GroupCommitWriter.run(work)``; a writer thread takes everything queued so far, runs the writes
in one transaction and commits once. A caller's answer only comes after the commit:
read-your-writes holds.

A batch first runs without savepoints (each costs two statements and the ORM's bookkeeping, per
write). If any write fails, the transaction is rolled back and the batch runs again with each
write in a savepoint of its own: a failing write rolls back only itself and raises in its
caller, the others commit. If the commit itself fails, each write is tried again in a
transaction of its own, so one bad write never sinks another. Writes must therefore be safe to
run again after a rollback (they are plain functions of the session).

A caller that gives up (a cancelled local activity) is skipped if its write has not started,
and otherwise simply not answered; the writer goes on. Answers reach each event loop in one
wake-up per batch, not one per write. The thread is started on the first write and then waits
for the next until it has been idle for ``IDLE_S`` (a daemon: nothing to shut down); starting
one per burst of work cost a thread start each time the queue ran dry, hundreds a second at the
bench's rate. While it runs, the thread keeps one connection for all its transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from models.checkpoints import WalCheckpoints, stop_checkpointing_at_commit
from models.db import is_sqlite, session_scope, write_connection

T = TypeVar("T")
MAX_BATCH = 64
IDLE_S = 30.0


@dataclass
class _Job:
    work: Callable[[Session], Any]
    loop: asyncio.AbstractEventLoop
    waiter: asyncio.Future[Any]


@dataclass
class _Outcome:
    job: _Job
    result: Any = None
    error: BaseException | None = None


def _settle(outcomes: list[_Outcome]) -> None:
    """On the callers' event loop: answer every caller still waiting."""
    for outcome in outcomes:
        waiter = outcome.job.waiter
        if waiter.done():  # cancelled by its caller meanwhile
            continue
        if outcome.error is None:
            waiter.set_result(outcome.result)
        else:
            waiter.set_exception(outcome.error)


class GroupCommitWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = MAX_BATCH,
        on_begin: Callable[[Session], None] | None = None,
    ) -> None:
        """``on_begin`` runs first in every transaction: take there the locks the writes will
        need, so two writers never take them in opposite orders."""
        self.engine = engine
        self.max_batch = max_batch
        self.on_begin = on_begin
        self._queue: list[_Job] = []
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._running = False
        # The writer thread's own connection, kept while it runs (see ``_transaction``).
        self._connection: Connection | None = None
        # SQLite: its commits never checkpoint; the thread does, between them
        # (models/checkpoints.py).
        self._checkpoints = WalCheckpoints() if is_sqlite(engine) else None

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a committed transaction without blocking the event loop."""
        loop = asyncio.get_running_loop()
        job = _Job(work, loop, loop.create_future())
        with self._lock:
            self._queue.append(job)
            if self._running:
                self._work.notify()
            else:
                self._running = True
                threading.Thread(target=self._drain, name="rentan-writer", daemon=True).start()
        result: T = await job.waiter
        return result

    def _drain(self) -> None:
        batch: list[_Job] = []
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._work.wait(self._idle_wait_s())
                    if not self._queue and not self._checkpoint_pending():
                        # Idle that long: the next write starts a new thread.
                        self._drop_connection()
                        self._running = False
                        return
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                # A job whose caller already gave up is not run at all.
                batch = [job for job in batch if not job.waiter.done()]
                if batch:
                    self._answer(self._commit(batch))
                    if self._checkpoints is not None:
                        self._checkpoints.wrote()
                batch = []
                self._checkpoint(idle=not self._queue)
        except BaseException as exc:
            # Never leave a caller waiting, and let the next write start a new thread.
            self._answer([_Outcome(job, error=exc) for job in batch])
            with self._lock:
                # Before a new thread can start: the connection is this thread's to close.
                self._drop_connection()
                self._running = False
            raise

    def _commit(self, batch: list[_Job]) -> list[_Outcome]:
        try:
            return self._transaction(batch, savepoints=False)
        except Exception as exc:
            if len(batch) == 1:  # a write alone needs no savepoint: its failure is its own
                return [_Outcome(batch[0], error=exc)]
        # A write or the commit failed: the batch again, each write in a savepoint.
        try:
            return self._transaction(batch, savepoints=True)
        except Exception:
            pass
        # The commit failed: each write alone, so only the bad one fails.
        return [outcome for job in batch for outcome in self._commit([job])]

    def _transaction(self, batch: list[_Job], *, savepoints: bool) -> list[_Outcome]:
        """One transaction on the thread's own connection. Any failure drops that connection
        (the next transaction takes a fresh one from the pool, checked on PostgreSQL); when the
        database had closed the kept one meanwhile (a restart), the batch runs again at once on
        a fresh one, as a pooled connection would have been checked before use."""
        for attempt in (1, 2):
            kept = self._connection is not None
            if self._connection is None:
                self._connection = write_connection(self.engine)
                if self._checkpoints is not None:
                    stop_checkpointing_at_commit(self._connection)
            try:
                return self._run_batch(self._connection, batch, savepoints=savepoints)
            except DBAPIError as exc:
                self._drop_connection()
                if not (kept and exc.connection_invalidated and attempt == 1):
                    raise
            except BaseException:
                self._drop_connection()
                raise
        raise AssertionError("unreachable")

    def _idle_wait_s(self) -> float:
        """How long to wait for work: until a pending checkpoint is due, else ``IDLE_S``."""
        if self._checkpoint_pending():
            assert self._checkpoints is not None
            return self._checkpoints.seconds_until_due()
        return IDLE_S

    def _checkpoint_pending(self) -> bool:
        return (
            self._checkpoints is not None
            and self._connection is not None
            and self._checkpoints.pending()
        )

    def _checkpoint(self, *, idle: bool) -> None:
        wal = self._checkpoints
        if wal is None or self._connection is None or not wal.due(idle=idle):
            return
        try:
            wal.run(self._connection)
        except Exception:  # the next one tries again; SQLite's own limit still holds elsewhere
            self._drop_connection()

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a dead connection is simply discarded
                if self._checkpoints is not None:
                    # Not back into the pool: its commits would still never checkpoint.
                    connection.invalidate()
                connection.close()

    def _run_batch(
        self, connection: Connection, batch: list[_Job], *, savepoints: bool
    ) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        with session_scope(self.engine, connection=connection) as session:
            if self.on_begin is not None:
                self.on_begin(session)
            for job in batch:
                # Rows another transaction changed since an earlier job read them (a savepoint
                # rollback releases its row locks) are read afresh.
                session.expire_all()
                if not savepoints:
                    outcomes.append(_Outcome(job, job.work(session)))
                    continue
                try:
                    with session.begin_nested():
                        outcomes.append(_Outcome(job, job.work(session)))
                except Exception as exc:  # the caller gets it; the batch goes on
                    outcomes.append(_Outcome(job, error=exc))
        return outcomes

    @staticmethod
    def _answer(outcomes: list[_Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome.job.loop, []).append(outcome)
        for loop, settled in by_loop.items():
            # A closed loop (RuntimeError) has nobody waiting on it any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, settled)

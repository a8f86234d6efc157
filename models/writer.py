"""Group commit: one thread writes the projection, many callers' writes per transaction.

Every enrollment step is a small write (the row, a decision, an audit entry) from a local
activity. One transaction each meant 32 threads queueing for SQLite's single writer, and on
PostgreSQL for the audit chain's lock, with every commit paid alone. Here a caller hands its
write to ``GroupCommitWriter`` and waits; a writer thread takes everything queued so far, runs
each write in a savepoint of one transaction and commits once. A write that fails rolls back its
own savepoint and raises in its caller, leaving the others in the batch; if the commit itself
fails, each write of the batch is tried again in a transaction of its own, so one bad write
never sinks another. A caller's answer only comes after the commit: read-your-writes holds.
A caller that gives up (a cancelled local activity) is skipped if its write has not started,
and otherwise simply not answered; the writer goes on. The thread runs while there is work and
ends when the queue is empty; nothing to shut down. Callers on an event loop (the projection's
local activities) await ``run``: no thread of theirs waits on the database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.db import session_scope

T = TypeVar("T")
MAX_BATCH = 64


@dataclass
class _Job:
    work: Callable[[Session], Any]
    future: Future[Any] = field(default_factory=Future)

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.future.done():  # cancelled by its caller meanwhile
            return
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)


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
        self._running = False

    def submit(self, work: Callable[[Session], T]) -> Future[T]:
        """Queue ``work(session)``; the future holds its result (or exception) once committed."""
        job = _Job(work)
        with self._lock:
            self._queue.append(job)
            if not self._running:
                self._running = True
                threading.Thread(target=self._drain, name="rentan-writer", daemon=True).start()
        return job.future

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a committed transaction without blocking the event loop."""
        result: T = await asyncio.wrap_future(self.submit(work))
        return result

    def _drain(self) -> None:
        batch: list[_Job] = []
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._running = False
                        return
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                # A job whose caller already gave up is not run at all.
                batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
                if batch:
                    self._commit(batch)
                batch = []
        except BaseException as exc:
            # Never leave a caller waiting, and let the next submit start a new thread.
            for job in batch:
                job.answer(error=exc)
            with self._lock:
                self._running = False
            raise

    def _commit(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            with session_scope(self.engine) as session:
                if self.on_begin is not None:
                    self.on_begin(session)
                for job in batch:
                    # Rows another transaction changed since an earlier job read them (a
                    # savepoint rollback releases its row locks) are read afresh.
                    session.expire_all()
                    try:
                        with session.begin_nested():
                            outcomes.append((job, job.work(session), None))
                    except Exception as exc:  # the caller gets it; the batch goes on
                        outcomes.append((job, None, exc))
        except Exception as exc:
            if len(batch) == 1:
                batch[0].answer(error=exc)
                return
            for job in batch:  # the commit failed: each write alone, so only the bad one fails
                self._commit([job])
            return
        for job, result, error in outcomes:
            job.answer(result, error)

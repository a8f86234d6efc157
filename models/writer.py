"""Group commit: one thread writes the projection, many callers' writes per transaction.

Every enrollment step is a small write (the row, a decision, an audit entry) from a local
activity thread. One transaction each meant 32 threads queueing for SQLite's single writer, and
on PostgreSQL for the audit chain's lock, with every commit paid alone. Here a caller hands its
write to ``GroupCommitWriter.run`` and blocks; a writer thread takes everything queued so far,
runs each write in a savepoint of one transaction and commits once. A write that fails rolls
back its own savepoint and raises in its caller, leaving the others in the batch; if the commit
itself fails, each write of the batch is tried again in a transaction of its own, so one bad
write never sinks another. A caller's return only comes after the commit: read-your-writes holds.
The thread runs while there is work and ends when the queue is empty; nothing to shut down.
Callers on an event loop (the projection's local activities) await ``run``: no thread of theirs
waits on the database.
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


class GroupCommitWriter:
    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max_batch
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
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
            self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            with session_scope(self.engine) as session:
                for job in batch:
                    try:
                        with session.begin_nested():
                            outcomes.append((job, job.work(session), None))
                    except Exception as exc:  # the caller gets it; the batch goes on
                        outcomes.append((job, None, exc))
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for job in batch:  # the commit failed: each write alone, so only the bad one fails
                self._commit([job])
            return
        for job, result, error in outcomes:
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)

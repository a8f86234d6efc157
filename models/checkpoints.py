"""SQLite: the group-commit writer copies its WAL into the database file between writes, not in one.

SQLite checkpoints at the commit that takes the WAL past 1,000 pages: that commit also copies
every page the WAL holds into the database file. A verification's write puts about 40 KB into
the WAL, so one write in a hundred paid 7-8 ms for the copy (the p99 of a verification,
as measured). The writer's connection therefore never checkpoints at commit
(``wal_autocheckpoint=0``); the writer thread checkpoints itself ``EVERY_S`` after a write
once its queue is empty (at the latest after ``OVERDUE_S``, however busy), so a write waits for
a copy only if it arrives during one. Being the process's only writer, it leaves nothing in the
WAL uncopied, and the next write starts the WAL over (a checkpoint from another thread, racing
the writes, never caught up and the WAL grew without end). Other connections keep SQLite's
default: a commit of theirs may pay for copying what the writer left (the API's budget
commits, not the verifications).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.engine import Connection

EVERY_S = 0.5
OVERDUE_S = 2.0


def stop_checkpointing_at_commit(connection: Connection) -> None:
    """This connection's commits leave the WAL to ``WalCheckpoints``."""
    dbapi: Any = connection.connection.driver_connection
    dbapi.execute("PRAGMA wal_autocheckpoint=0")


class WalCheckpoints:
    """When the writer thread checkpoints; used by that thread only."""

    def __init__(self) -> None:
        self._since: float | None = None  # when the oldest write not yet copied was committed

    def wrote(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def pending(self) -> bool:
        return self._since is not None

    def seconds_until_due(self) -> float:
        """Until an idle writer's checkpoint is due (0 if it is)."""
        if self._since is None:
            return EVERY_S
        return max(0.0, EVERY_S - (time.monotonic() - self._since))

    def due(self, *, idle: bool) -> bool:
        if self._since is None:
            return False
        waited = time.monotonic() - self._since
        return waited >= (EVERY_S if idle else OVERDUE_S)

    def run(self, connection: Connection) -> None:
        """Copy the WAL into the database file (outside any transaction of ``connection``)."""
        dbapi: Any = connection.connection.driver_connection
        dbapi.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._since = None

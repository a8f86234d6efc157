"""The audit log is tamper-evident (invariant 5): every row's hash covers its content and the
previous row's hash, so an edited or deleted row breaks the chain where it happened."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from domain.worker_rows import WorkerRow
from models.audit_chain import GENESIS, AuditEntry, ChainCheck, append, row_hash, verify_chain
from models.db import make_engine, session_scope
from models.tables import AuditEvent, Program
from tests.harness import VERIFIER, Rig, audit_of, enroll, nik, worker_row

T0 = dt.datetime(2026, 10, 1, 9, 0, tzinfo=dt.UTC)
_people = random.Random()


def someone() -> WorkerRow:
    """A person no other test of the session enrolls (the session's BPJS simulator remembers
    everyone it registered)."""
    born = dt.date(_people.randint(1970, 1999), _people.randint(1, 12), _people.randint(1, 28))
    serial = _people.randint(1000, 8999)
    return worker_row(
        serial, nik=nik(born.day, born.month, born.year, serial), birth_date=born.isoformat()
    )


def append_entries(engine: Engine, count: int = 5) -> list[int]:
    """``count`` audit rows, appended one transaction each as the recorder does; their ids."""
    ids = []
    for n in range(count):
        with session_scope(engine) as session:
            event_id = append(
                session,
                AuditEntry(
                    event_key=f"enr_audit:run-1:{n + 1}",
                    occurred_at=T0 + dt.timedelta(minutes=n),
                    actor="dpmd-verifier" if n % 2 else "rentan",
                    role="dpmd_verifier" if n % 2 else "system",
                    action=f"step_{n + 1}",
                    enrollment_id="enr_audit",
                    workflow_id="enr_audit",
                    run_id="run-1",
                    state_before="nominated",
                    state_after="verified",
                    reason=f"reason {n + 1}",
                    detail={"n": str(n + 1)},
                ),
            )
            assert event_id is not None
            ids.append(event_id)
    return ids


def check(engine: Engine) -> ChainCheck:
    with Session(engine) as session:
        return verify_chain(session)


def test_append_to_an_intact_chain_verifies_and_a_repeated_key_adds_nothing(
    engine: Engine,
) -> None:
    ids = append_entries(engine)
    assert check(engine) == ChainCheck(ok=True, checked=5, first_broken=None)
    # The same event again (a record written twice) adds nothing.
    with session_scope(engine) as session:
        again = append(
            session,
            AuditEntry(
                event_key="enr_audit:run-1:3", occurred_at=T0, actor="x", role="y", action="z"
            ),
        )
    assert again is None
    with Session(engine) as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    assert [r.id for r in rows] == ids
    assert rows[2].actor == "rentan"
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    # Small batches walk the same chain.
    with Session(engine) as session:
        assert verify_chain(session, batch=2) == ChainCheck(ok=True, checked=5, first_broken=None)


def test_append_many_in_one_transaction_links_them_in_order(engine: Engine) -> None:
    """The group-commit writer appends many entries per transaction: each links to the last."""
    with session_scope(engine) as session:
        ids = [
            append(
                session,
                AuditEntry(
                    event_key=f"enr_batch:run-1:{n}",
                    occurred_at=T0,
                    actor="a",
                    role="b",
                    action="c",
                ),
            )
            for n in range(4)
        ]
    assert None not in ids
    assert check(engine) == ChainCheck(ok=True, checked=4, first_broken=None)


def test_edit_a_row_breaks_the_chain_at_that_row(engine: Engine) -> None:
    ids = append_entries(engine)
    with session_scope(engine) as session:
        session.execute(
            text("UPDATE audit_event SET reason = :reason WHERE id = :id"),
            {"reason": "approved by the bupati", "id": ids[2]},
        )
    result = check(engine)
    assert (result.ok, result.first_broken, result.checked) == (False, ids[2], 3)


def test_edit_a_row_and_recompute_its_hash_breaks_the_chain_at_the_next_row(
    engine: Engine,
) -> None:
    """Whoever edits a row and recomputes its hash still breaks the next row's link."""
    ids = append_entries(engine)
    with session_scope(engine) as session:
        event = session.get(AuditEvent, ids[1])
        assert event is not None
        event.actor = "someone-else"
        event.hash = row_hash(event.prev_hash, event)
        session.add(event)
    result = check(engine)
    assert (result.ok, result.first_broken) == (False, ids[2])


def test_delete_a_row_breaks_the_chain_at_the_next_row(engine: Engine) -> None:
    ids = append_entries(engine)
    with session_scope(engine) as session:
        session.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": ids[2]})
    result = check(engine)
    assert (result.ok, result.first_broken) == (False, ids[3])


def test_delete_the_first_row_is_detected(engine: Engine) -> None:
    ids = append_entries(engine, 3)
    with session_scope(engine) as session:
        session.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": ids[0]})
    assert check(engine).first_broken == ids[1]


@pytest.fixture
def copy_of_the_rig(rig: Rig, tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    """Consistent copies of the rig's projection, to tamper with: the rig's own log is every
    test's."""
    engines: list[Engine] = []

    def copy() -> Engine:
        source = make_url(rig.settings.resolved_database_url).database
        target = tmp_path / f"copy-{len(engines)}.db"
        with sqlite3.connect(str(source)) as live, sqlite3.connect(str(target)) as copied:
            live.backup(copied)
        engines.append(make_engine(f"sqlite:///{target}"))
        return engines[-1]

    yield copy
    for engine in engines:
        engine.dispose()


async def test_enroll_writes_a_chain_that_breaks_where_a_decision_is_rewritten(
    rig: Rig, program: Program, copy_of_the_rig: Callable[[], Engine]
) -> None:
    """The chain the recorder writes for a whole lifecycle (batches, local activities, the
    registration activity) verifies; rewriting who verified the person is detected at that
    row."""
    (enrollment_id,) = await enroll(rig, program, [someone()])
    events = audit_of(rig.engine, enrollment_id)
    assert [e.action for e in events] == [
        "nominated",
        "verified",
        "budget_approved",
        "registration_started",
        "activated",
    ]
    engine = copy_of_the_rig()
    result = check(engine)
    assert result.ok, result
    assert result.checked >= len(events)
    verified = events[1]
    assert (verified.actor, verified.role) == (VERIFIER.name, VERIFIER.role)
    with session_scope(engine) as session:
        session.execute(
            text("UPDATE audit_event SET actor = 'someone-else' WHERE id = :id"),
            {"id": verified.id},
        )
    broken = check(engine)
    assert (broken.ok, broken.first_broken) == (False, verified.id)

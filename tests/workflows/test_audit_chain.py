"""The audit log is tamper-evident (invariant 5): every row's hash covers its content and the
previous row's hash, so an edited or deleted row breaks the chain where it happened."""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from activities import audit
from models.audit_chain import GENESIS, AuditEntry, row_hash, verify_chain
from models.db import session_scope
from models.tables import AuditEvent
from core.settings import Settings
from tests.harness import (
    audit_of,
    enroll,
    make_program,
    make_sim,
    running_worker,
    server_today,
    worker_row,
)

T0 = dt.datetime(2026, 10, 1, 9, 0, tzinfo=dt.UTC)


def append_entries(engine: Engine, count: int = 5) -> list[int]:
    """``count`` audit rows, appended one transaction each as the activities do; their ids."""
    ids = []
    for n in range(count):
        with session_scope(engine) as session:
            event_id = audit.append(
                session,
                AuditEntry(
                    event_key=f"enr_audit#{n + 1}",
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


def check(engine: Engine) -> audit.ChainCheck:
    with Session(engine) as session:
        return verify_chain(session)


def test_intact_chain_verifies_and_appends_are_idempotent(engine: Engine) -> None:
    ids = append_entries(engine)
    assert check(engine) == audit.ChainCheck(ok=True, checked=5, first_broken=None)
    # The same event again (a retried activity) adds nothing.
    with session_scope(engine) as session:
        again = audit.append(
            session,
            AuditEntry(event_key="enr_audit#3", occurred_at=T0, actor="x", role="y", action="z"),
        )
    assert again is None
    with Session(engine) as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    assert [r.id for r in rows] == ids
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    # Small batches walk the same chain.
    with Session(engine) as session:
        assert verify_chain(session, batch=2).ok


def test_an_edited_row_breaks_the_chain_at_that_row(engine: Engine) -> None:
    ids = append_entries(engine)
    with session_scope(engine) as session:
        session.execute(
            text("UPDATE audit_event SET reason = :reason WHERE id = :id"),
            {"reason": "approved by the bupati", "id": ids[2]},
        )
    result = check(engine)
    assert (result.ok, result.first_broken, result.checked) == (False, ids[2], 3)


def test_an_edited_row_with_a_recomputed_hash_breaks_the_chain_at_the_next_row(
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


def test_a_deleted_row_breaks_the_chain_at_the_next_row(engine: Engine) -> None:
    ids = append_entries(engine)
    with session_scope(engine) as session:
        session.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": ids[2]})
    result = check(engine)
    assert (result.ok, result.first_broken) == (False, ids[3])


def test_a_deleted_first_row_is_detected(engine: Engine) -> None:
    ids = append_entries(engine, 3)
    with session_scope(engine) as session:
        session.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": ids[0]})
    assert check(engine).first_broken == ids[1]


async def test_lifecycle_chain_verifies_until_a_decision_is_rewritten(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    """The chain the workflow's activities write: intact after a lifecycle; rewriting who
    verified the person is detected at that row."""
    env = time_skipping_env
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    async with running_worker(env.client, settings, engine, make_sim()):
        enrollment_id = await enroll(env, settings, engine, program, worker_row(91))
    events = audit_of(engine, enrollment_id)
    assert [e.action for e in events] == [
        "nominated",
        "verified",
        "budget_approved",
        "registration_started",
        "activated",
    ]
    assert check(engine) == audit.ChainCheck(ok=True, checked=5, first_broken=None)
    verified = events[1]
    with session_scope(engine) as session:
        session.execute(
            text("UPDATE audit_event SET actor = 'someone-else' WHERE id = :id"),
            {"id": verified.id},
        )
    assert check(engine).first_broken == verified.id

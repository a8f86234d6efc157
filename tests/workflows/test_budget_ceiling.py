"""A funding source is never committed beyond its ceiling, however many approvals race
(invariant 4): many threads commit at once against PostgreSQL, each in its own transaction the
way ``services.steps.approve_budget`` does; and through the workflow, a batch larger than what
remains is refused whole."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from activities import budget
from models.db import make_engine, session_scope
from models.tables import BudgetEntry, Enrollment, Person
from core.settings import Settings
from services.steps import StepRefused, approve_budget, send_step
from tests.harness import (
    BUDGET_OFFICER,
    VERIFIER,
    VILLAGE,
    ledger_of,
    make_program,
    make_sim,
    nominate_rows,
    row_of,
    running_worker,
    server_today,
    source_of,
    wait_for_state,
    worker_row,
)
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import Verification

PREMIUM = 50_400
ROOM = 7  # the ceiling pays for exactly 7 premiums
CEILING = ROOM * PREMIUM


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def verified_enrollments(engine: Engine, program_code: str, count: int) -> list[str]:
    """Person and enrollment rows in state ``verified``, written directly."""
    ids = [f"enr_ceiling_{i:03d}" for i in range(count)]
    with session_scope(engine) as session:
        for i in range(count):
            session.add(
                Person(
                    person_key=f"pk-{i:03d}",
                    nik_masked="160301******0001",
                    full_name=f"Warga {i}",
                    birth_date=dt.date(1985, 5, 15),
                    gender="L",
                )
            )
        session.flush()
        for i, enrollment_id in enumerate(ids):
            session.add(
                Enrollment(
                    id=enrollment_id,
                    program_code=program_code,
                    person_key=f"pk-{i:03d}",
                    village_code=VILLAGE,
                    district_code=VILLAGE[:8],
                    category="perangkat_desa",
                    full_name=f"Warga {i}",
                    nik_masked="160301******0001",
                    state="verified",
                    declared_income_idr=1_000_000,
                    premium_idr=PREMIUM,
                    workflow_id=enrollment_id,
                    seq=2,
                    nominated_by="op",
                )
            )
    return ids


def race(engine: Engine, program_code: str, batches: list[list[str]]) -> list[str]:
    """Commit each batch from its own thread and transaction, all released at once; returns
    per batch ``committed`` or the error's class name."""
    gate = threading.Barrier(len(batches))

    def commit(batch: list[str]) -> str:
        gate.wait()
        try:
            with session_scope(engine) as session:
                budget.commit(
                    session,
                    program_code=program_code,
                    source_code="APBD",
                    claims=[budget.Claim(i, "perangkat_desa", PREMIUM) for i in batch],
                    actor="budget-officer",
                )
        except budget.BudgetError as exc:
            return type(exc).__name__
        return "committed"

    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        return list(pool.map(commit, batches))


def ledger_total(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.coalesce(func.sum(BudgetEntry.amount_idr), 0))).one())


@pytest.mark.postgres
def test_racing_commitments_never_exceed_the_ceiling(pg_engine: Engine) -> None:
    program = make_program(pg_engine, ceiling_idr=CEILING)
    ids = verified_enrollments(pg_engine, program.code, 30)

    outcomes = race(pg_engine, program.code, [[i] for i in ids])

    assert outcomes.count("committed") == ROOM
    assert outcomes.count("CeilingExceeded") == len(ids) - ROOM
    source = source_of(pg_engine, program.code)
    assert source.committed_idr == CEILING == ledger_total(pg_engine)
    ledger = ledger_of(pg_engine, program.code)
    committed = {ids[n] for n, outcome in enumerate(outcomes) if outcome == "committed"}
    assert {e.enrollment_id for e in ledger} == committed
    assert all((e.kind, e.amount_idr) == ("commit", PREMIUM) for e in ledger)


@pytest.mark.postgres
def test_racing_batches_are_all_or_nothing(pg_engine: Engine) -> None:
    program = make_program(pg_engine, ceiling_idr=CEILING)
    ids = verified_enrollments(pg_engine, program.code, 30)
    batches = [ids[n : n + 3] for n in range(0, 30, 3)]

    outcomes = race(pg_engine, program.code, batches)

    assert outcomes.count("committed") == ROOM // 3  # two batches of 3 fit, a third does not
    assert outcomes.count("CeilingExceeded") == len(batches) - ROOM // 3
    held = {e.enrollment_id for e in ledger_of(pg_engine, program.code)}
    for batch, outcome in zip(batches, outcomes, strict=True):
        assert (set(batch) <= held) if outcome == "committed" else not (set(batch) & held)
    source = source_of(pg_engine, program.code)
    assert source.committed_idr == 6 * PREMIUM == ledger_total(pg_engine)
    assert source.committed_idr <= source.ceiling_idr


@pytest.mark.postgres
def test_commit_then_release_then_commit_again_races_stay_consistent(pg_engine: Engine) -> None:
    """Releases racing fresh commitments: the room a release frees is used, never more."""
    program = make_program(pg_engine, ceiling_idr=CEILING)
    ids = verified_enrollments(pg_engine, program.code, 20)
    assert race(pg_engine, program.code, [[i] for i in ids[:ROOM]]) == ["committed"] * ROOM
    gate = threading.Barrier(16)

    def release(enrollment_id: str) -> int:
        gate.wait()
        with session_scope(pg_engine) as session:
            return budget.release(
                session, enrollment_id=enrollment_id, program_code=program.code, actor="t"
            )

    def commit(enrollment_id: str) -> str:
        gate.wait()
        try:
            with session_scope(pg_engine) as session:
                budget.commit(
                    session,
                    program_code=program.code,
                    source_code="APBD",
                    claims=[budget.Claim(enrollment_id, "perangkat_desa", PREMIUM)],
                    actor="t",
                )
        except budget.CeilingExceeded:
            return "refused"
        return "committed"

    with ThreadPoolExecutor(max_workers=16) as pool:
        # Three holders release (one of them twice, concurrently); 10 newcomers commit.
        released = [pool.submit(release, i) for i in (ids[0], ids[1], ids[2], ids[2])]
        committed = [pool.submit(commit, i) for i in ids[ROOM : ROOM + 10]]
        held_before = [pool.submit(commit, i) for i in ids[3:5]]  # already held: no-ops
        amounts = sorted(f.result() for f in released)
        outcomes = [f.result() for f in committed] + [f.result() for f in held_before]

    assert amounts == [0, PREMIUM, PREMIUM, PREMIUM]  # the double release gave back once
    assert outcomes[-2:] == ["committed", "committed"]  # already held: nothing new asked
    source = source_of(pg_engine, program.code)
    assert source.committed_idr == ledger_total(pg_engine) <= CEILING
    # Newcomers got exactly the room the releases freed by the time they committed.
    newcomers = outcomes[:-2].count("committed")
    assert 0 <= newcomers <= 3
    assert source.committed_idr == (ROOM - 3 + newcomers) * PREMIUM
    # Net holding per enrollment is 0 or one premium, never more.
    with Session(pg_engine) as session:
        nets = session.exec(
            select(BudgetEntry.enrollment_id, func.sum(BudgetEntry.amount_idr)).group_by(
                BudgetEntry.enrollment_id
            )
        ).all()
    assert {int(n) for _, n in nets} <= {0, PREMIUM}
    assert sum(int(n) for _, n in nets) == source.committed_idr


def test_an_enrollment_named_twice_in_a_batch_is_committed_once(engine: Engine) -> None:
    program = make_program(engine, ceiling_idr=CEILING)
    first, second = verified_enrollments(engine, program.code, 2)
    with session_scope(engine) as session:
        budget.commit(
            session,
            program_code=program.code,
            source_code="APBD",
            claims=[budget.Claim(i, "perangkat_desa", PREMIUM) for i in (first, second, first)],
            actor="budget-officer",
        )
    assert [e.enrollment_id for e in ledger_of(engine, program.code)] == [first, second]
    assert source_of(engine, program.code).committed_idr == 2 * PREMIUM == ledger_total(engine)
    # Committing again what is held commits nothing; one release gives back one premium.
    with session_scope(engine) as session:
        budget.commit(
            session,
            program_code=program.code,
            source_code="APBD",
            claims=[budget.Claim(first, "perangkat_desa", PREMIUM)],
            actor="budget-officer",
        )
        assert (
            budget.release(session, enrollment_id=first, program_code=program.code, actor="t")
            == PREMIUM
        )
        assert (
            budget.release(session, enrollment_id=first, program_code=program.code, actor="t") == 0
        )
    assert source_of(engine, program.code).committed_idr == PREMIUM == ledger_total(engine)


def test_a_source_refuses_categories_it_does_not_pay_for(engine: Engine) -> None:
    program = make_program(engine, ceiling_idr=CEILING)
    (enrollment_id,) = verified_enrollments(engine, program.code, 1)
    for source, refusal in (
        ("DBH_SAWIT", "DBH_SAWIT does not pay for perangkat_desa"),
        ("ADD", "has no funding source 'ADD'"),
    ):
        with pytest.raises(budget.NotPayable, match=refusal), session_scope(engine) as session:
            budget.commit(
                session,
                program_code=program.code,
                source_code=source,
                claims=[budget.Claim(enrollment_id, "perangkat_desa", PREMIUM)],
                actor="budget-officer",
            )
    assert ledger_of(engine, program.code) == []


async def test_a_batch_beyond_the_ceiling_is_refused_whole(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    """Through the workflow, on both databases: 3 verified enrollments, room for 2; the batch
    is refused with the shortfall and nothing is committed; 2 of them then fit."""
    env = time_skipping_env
    client = env.client
    program = make_program(
        engine, start=(await server_today(env)).replace(day=1), ceiling_idr=2 * PREMIUM
    )
    async with running_worker(client, settings, engine, make_sim()):
        result = await nominate_rows(
            client,
            engine,
            settings,
            program,
            [worker_row(s) for s in (81, 82, 83)],
            today=await server_today(env),
        )
        ids = [a.enrollment_id for a in result.accepted]
        for enrollment_id in ids:
            await send_step(
                client, enrollment_id, EnrollmentWorkflow.verify, Verification(VERIFIER, True)
            )
        with pytest.raises(StepRefused, match="short by Rp 50,400") as refused:
            await approve_budget(
                client,
                engine,
                program_code=program.code,
                funding_source="APBD",
                enrollment_ids=ids,
                actor=BUDGET_OFFICER,
            )
        assert refused.value.context == {
            "requested_idr": 3 * PREMIUM,
            "remaining_idr": 2 * PREMIUM,
            "shortfall_idr": PREMIUM,
        }
        assert ledger_of(engine, program.code) == []
        assert all(row_of(engine, i).state == "verified" for i in ids)

        approval = await approve_budget(
            client,
            engine,
            program_code=program.code,
            funding_source="APBD",
            enrollment_ids=ids[:2],
            actor=BUDGET_OFFICER,
        )
        assert [o.ok for o in approval.outcomes] == [True, True]
        assert (approval.committed_idr, approval.remaining_idr) == (2 * PREMIUM, 0)
        for enrollment_id in ids[:2]:
            await wait_for_state(env, enrollment_id, "active")
        with pytest.raises(StepRefused, match="only Rp 0 remains"):
            await approve_budget(
                client,
                engine,
                program_code=program.code,
                funding_source="APBD",
                enrollment_ids=ids[2:],
                actor=BUDGET_OFFICER,
            )
    assert source_of(engine, program.code).committed_idr == 2 * PREMIUM == ledger_total(engine)
    assert row_of(engine, ids[2]).state == "verified"

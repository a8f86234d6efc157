"""The budget ledger on both databases: a commitment has one owner (its approval), at most one is
open per enrollment, the ceiling holds however many approvals race, and a release gives back
that one commitment, once (invariant 4).

Each race commits from its own thread and transaction, all released at once, the way budget
approvals' batch activities run in several workers."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from domain.records import Commitment as CommitmentRef
from models import ledger
from models.db import make_engine, session_scope
from models.tables import Commitment, FundingSource
from services.programs import FundingSourceSpec, ProgramSpec, create_program

PREMIUM = 50_400
CATEGORY = "perangkat_desa"


@pytest.fixture
def engine(any_db_url: str) -> Iterator[Engine]:
    engine = make_engine(any_db_url)
    yield engine
    engine.dispose()


def program(engine: Engine, *, room: int, sources: tuple[str, ...] = ("APBD",)) -> str:
    """A program whose every source pays for ``room`` premiums of perangkat desa."""
    code = f"L-{uuid.uuid4().hex[:8]}"
    create_program(
        engine,
        ProgramSpec(
            code=code,
            name="ledger test",
            period_start=dt.date(2026, 1, 1),
            period_end=dt.date(2026, 3, 31),
            funding_sources=[FundingSourceSpec(s, s, room * PREMIUM, [CATEGORY]) for s in sources],
        ),
    )
    return code


def commit(engine: Engine, code: str, enrollment_ids: list[str], *, source: str = "APBD") -> str:
    """One approval of ``enrollment_ids``: its id, or the name of the error that refused it."""
    approval = f"approval-{uuid.uuid4().hex[:8]}"
    try:
        with session_scope(engine) as session:
            ledger.commit(
                session,
                approval_id=approval,
                program_code=code,
                source_code=source,
                claims=[ledger.Claim(i, CATEGORY, PREMIUM) for i in enrollment_ids],
                actor="budget-officer",
            )
    except ledger.BudgetError as exc:
        return type(exc).__name__
    return approval


def race(engine: Engine, code: str, batches: list[tuple[str, list[str]]]) -> list[str]:
    """Each ``(source, ids)`` approved from its own thread, all at once."""
    gate = threading.Barrier(len(batches))

    def one(batch: tuple[str, list[str]]) -> str:
        gate.wait()
        return commit(engine, code, batch[1], source=batch[0])

    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        return list(pool.map(one, batches))


def open_commitments(engine: Engine, code: str) -> list[Commitment]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(Commitment).where(
                    Commitment.program_code == code, col(Commitment.released_at).is_(None)
                )
            )
        )


def committed(engine: Engine, code: str) -> dict[str, int]:
    with Session(engine) as session:
        sources = list(
            session.exec(select(FundingSource).where(FundingSource.program_code == code))
        )
        totals = ledger.committed(session, [s.id for s in sources if s.id is not None])
        return {s.code: totals[s.id or 0] for s in sources}


def test_racing_approvals_never_commit_beyond_the_ceiling(engine: Engine) -> None:
    code = program(engine, room=7)
    outcomes = race(engine, code, [("APBD", [f"enr_{i}", f"enr_{i}b"]) for i in range(10)])
    won = [o for o in outcomes if o.startswith("approval-")]
    assert len(won) == 3  # 3 x 2 premiums fit in 7; a fourth pair does not
    assert sorted(set(outcomes) - set(won)) == ["CeilingExceeded"]
    assert committed(engine, code) == {"APBD": 6 * PREMIUM}
    assert sum(c.amount_idr for c in open_commitments(engine, code)) == 6 * PREMIUM


def test_the_same_enrollments_approved_at_once_are_funded_once(engine: Engine) -> None:
    code = program(engine, room=100)
    ids = [f"enr_{i:02d}" for i in range(20)]
    # One batch of all twenty and a single approval for each, all racing.
    outcomes = race(engine, code, [("APBD", ids)] + [("APBD", [i]) for i in ids])
    rows = open_commitments(engine, code)
    assert sorted(c.enrollment_id for c in rows) == ids  # each exactly once
    assert len({c.approval_id for c in rows}) == (1 if outcomes[0].startswith("approval-") else 20)
    assert committed(engine, code) == {"APBD": 20 * PREMIUM}
    for refused in (o for o in outcomes if not o.startswith("approval-")):
        assert refused == "AlreadyFunded"


def test_two_sources_approving_one_enrollment_at_once_fund_it_from_one(engine: Engine) -> None:
    code = program(engine, room=10, sources=("APBD", "ADD"))
    ids = [f"enr_{i}" for i in range(5)]
    outcomes = race(engine, code, [("APBD", ids), ("ADD", ids)] * 3)
    assert sum(o.startswith("approval-") for o in outcomes) == 1
    assert {o for o in outcomes if not o.startswith("approval-")} == {"AlreadyFunded"}
    totals = committed(engine, code)
    assert sorted(totals.values()) == [0, 5 * PREMIUM]
    assert sorted(c.enrollment_id for c in open_commitments(engine, code)) == ids


def test_a_release_gives_back_that_commitment_once(engine: Engine) -> None:
    code = program(engine, room=5)
    first = commit(engine, code, ["enr_a", "enr_b"])
    ref = CommitmentRef(first, code, "enr_a", "APBD", PREMIUM)
    at = dt.datetime.now(dt.UTC)
    with session_scope(engine) as session:
        assert ledger.release(session, ref, by="rentan", reason="withdrawn", at=at)
    with session_scope(engine) as session:
        assert not ledger.release(session, ref, by="rentan", reason="again", at=at)
    assert committed(engine, code) == {"APBD": PREMIUM}
    # Released, the enrollment can be funded again, by another approval.
    second = commit(engine, code, ["enr_a"])
    assert second.startswith("approval-")
    assert committed(engine, code) == {"APBD": 2 * PREMIUM}


def test_a_release_by_another_approval_releases_nothing(engine: Engine) -> None:
    code = program(engine, room=5)
    owner = commit(engine, code, ["enr_a"])
    assert owner.startswith("approval-")
    stranger = CommitmentRef("approval-stranger", code, "enr_a", "APBD", PREMIUM)
    with session_scope(engine) as session:
        released = ledger.release(
            session, stranger, by="rentan", reason="refused", at=dt.datetime.now(dt.UTC)
        )
    assert not released
    assert [c.approval_id for c in open_commitments(engine, code)] == [owner]


def test_an_approval_is_refused_whole_when_a_source_does_not_pay_a_category(
    engine: Engine,
) -> None:
    code = program(engine, room=5)
    with pytest.raises(ledger.NotPayable), session_scope(engine) as session:
        ledger.commit(
            session,
            approval_id="approval-x",
            program_code=code,
            source_code="APBD",
            claims=[
                ledger.Claim("enr_a", CATEGORY, PREMIUM),
                ledger.Claim("enr_b", "petani_sawit", PREMIUM),
            ],
            actor="budget-officer",
        )
    assert open_commitments(engine, code) == []

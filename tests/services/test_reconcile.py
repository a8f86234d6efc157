"""``rentan reconcile``: the projection and the ledger compared with the workflows, on the dev
server (whose visibility lists the program's workflows as a production cluster's would)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

import services.reconcile as reconcile_module
from core.sealing import sealer_for
from models.db import session_scope
from models.tables import AuditEvent, Commitment, Enrollment, FundingSource, Program
from services.reconcile import Pace, Report, reconcile
from tests.harness import (
    Rig,
    eventually,
    fund,
    make_program,
    nominate_rows,
    server_today,
    stop_program,
    verify,
    wait_for_state,
    worker_row,
)
from workflows.search_attributes import PROGRAM


@pytest.fixture
async def cohort(dev_rig: Rig) -> AsyncIterator[tuple[Program, list[str]]]:
    """Four active enrollments and one rejected, on the dev server."""
    await dev_rig.sim.simulator.reset()
    start = (await server_today(dev_rig.env)).replace(day=1)
    program = make_program(dev_rig.engine, code=f"RC-{uuid.uuid4().hex[:8]}", start=start)
    result = await nominate_rows(dev_rig, program, [worker_row(s) for s in range(1, 6)])
    ids = [a.enrollment_id for a in result.accepted]
    await verify(dev_rig, ids[4:], approve=False, reason="not on the roster")
    await verify(dev_rig, ids[:4])
    await fund(dev_rig, program, ids[:4])
    for enrollment_id in ids[:4]:
        await wait_for_state(dev_rig.env, enrollment_id, "active")

    async def listed() -> bool | None:
        query = f"{PROGRAM.name} = '{program.code}'"
        count = len([e async for e in dev_rig.client.list_workflows(query)])
        return True if count == 5 else None

    await eventually(listed, what="the dev server lists the program's workflows")
    yield program, ids
    await stop_program(dev_rig, program.code)


async def check(rig: Rig, program: Program, tmp_path: Path, *, repair: bool = False) -> Report:
    return await reconcile(
        rig.client,
        rig.engine,
        program=program.code,
        repair=repair,
        sealer=sealer_for(rig.settings),
        rate_per_s=1000,
        checkpoint=tmp_path / "checkpoint.json",
    )


async def test_a_projection_that_follows_its_workflows_has_no_difference(
    dev_rig: Rig, cohort: tuple[Program, list[str]], tmp_path: Path
) -> None:
    program, _ = cohort
    report = await check(dev_rig, program, tmp_path)
    assert (report.workflows, report.differences) == (5, 0), report.shown


async def test_lost_records_are_found_and_repaired_through_the_recorder(
    dev_rig: Rig, cohort: tuple[Program, list[str]], tmp_path: Path
) -> None:
    program, ids = cohort
    # A batch's write that never came: the activations' audit entries gone, a row set back.
    with session_scope(dev_rig.engine) as session:
        session.execute(
            delete(AuditEvent).where(
                col(AuditEvent.enrollment_id).in_(ids[:2]), AuditEvent.action == "activated"
            )
        )
        session.execute(
            update(Enrollment)
            .where(col(Enrollment.id) == ids[2])
            .values(state="verified", seq=2, kpj_number=None)
        )
    found = await check(dev_rig, program, tmp_path)
    kinds = sorted(d.kind for d in found.shown)
    assert kinds == ["record missing", "record missing", "row behind"], found.shown

    repaired = await check(dev_rig, program, tmp_path, repair=True)
    assert repaired.repaired == 3
    assert repaired.differences == 0, repaired.shown
    assert (await check(dev_rig, program, tmp_path)).differences == 0
    with Session(dev_rig.engine) as session:
        row = session.get(Enrollment, ids[2])
        assert row is not None and (row.state, row.seq) == ("active", 5)


async def test_a_commitment_no_workflow_holds_is_found_and_released(
    dev_rig: Rig, cohort: tuple[Program, list[str]], tmp_path: Path
) -> None:
    program, ids = cohort
    with session_scope(dev_rig.engine) as session:
        source = session.exec(
            select(FundingSource).where(FundingSource.program_code == program.code)
        ).first()
        assert source is not None and source.id is not None
        # The rejected enrollment holds budget from an approval that never reached it.
        session.add(
            Commitment(
                approval_id="approval-lost",
                program_code=program.code,
                enrollment_id=ids[4],
                funding_source_id=source.id,
                amount_idr=50_400,
                committed_by="budget-officer",
                committed_at=dt.datetime.now(dt.UTC),
            )
        )
    found = await check(dev_rig, program, tmp_path)
    assert [(d.kind, d.enrollment_id) for d in found.shown] == [("commitment not held", ids[4])]
    await check(dev_rig, program, tmp_path, repair=True)
    with Session(dev_rig.engine) as session:
        lost = session.exec(
            select(Commitment).where(Commitment.approval_id == "approval-lost")
        ).one()
        assert lost.released_at is not None
    assert (await check(dev_rig, program, tmp_path)).differences == 0


async def test_an_interrupted_check_resumes_where_it_stopped(
    dev_rig: Rig,
    cohort: tuple[Program, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    program, ids = cohort
    with session_scope(dev_rig.engine) as session:
        session.execute(delete(AuditEvent).where(col(AuditEvent.enrollment_id).in_(ids)))
    monkeypatch.setattr(reconcile_module, "CHUNK", 2)

    class Stop(Exception):
        pass

    def stop_after_first_chunk(report: Report) -> None:
        raise Stop

    with pytest.raises(Stop):
        await reconcile(
            dev_rig.client,
            dev_rig.engine,
            program=program.code,
            repair=False,
            sealer=sealer_for(dev_rig.settings),
            rate_per_s=1000,
            checkpoint=tmp_path / "checkpoint.json",
            progress=stop_after_first_chunk,
        )
    assert (tmp_path / "checkpoint.json").exists()
    resumed = await check(dev_rig, program, tmp_path)
    assert resumed.resumed_after is not None
    # Every workflow counted once over both runs, every missing record found once.
    assert resumed.workflows == 5
    with Session(dev_rig.engine) as session:
        assert session.exec(select(Enrollment).where(col(Enrollment.id).in_(ids))).all()
    expected = 4 * 5 + 2  # four enrollments of five records each, the rejected one's two
    assert resumed.differences == expected
    assert not (tmp_path / "checkpoint.json").exists()


async def test_the_pace_spaces_calls_at_the_rate_asked() -> None:
    clock = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    pace = Pace(4, clock=lambda: clock[0], sleep=sleep)
    for _ in range(10):
        await pace.wait()
    assert clock[0] - 100.0 == pytest.approx(10 / 4)
    assert slept == pytest.approx([0.25] * 10)

"""Budget approvals through the workflows, racing as budget officers would (invariant 4): a batch
and single approvals of the same enrollments at once, two funding sources at once. Each
enrollment ends funded once, its workflow holding the approval the ledger has open, the ledger
equal to the premiums of the funded enrollments, and ``rentan reconcile`` finds nothing amiss.
On SQLite and on PostgreSQL, on the dev server (real time, and the visibility reconcile lists)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from core.sealing import sealer_for
from models.db import make_engine
from models.tables import Commitment, Enrollment, Program
from services.programs import FundingSourceSpec, ProgramSpec, create_program
from services.reconcile import reconcile
from services.steps import StepRefused, approve_budget
from tests.conftest import test_settings
from tests.harness import (
    BUDGET_OFFICER,
    VILLAGE_CATEGORIES,
    Rig,
    add_months,
    make_sim,
    nominate_rows,
    row_of,
    running_worker,
    server_today,
    stop_program,
    verify,
    view_of,
    worker_row,
)

PREMIUM = 50_400  # Rp 16,800 a month for three months


@pytest.fixture(params=["sqlite", "postgresql"])
async def race_rig(
    request: pytest.FixtureRequest, dev_rig: Rig, tmp_path: Path
) -> AsyncIterator[Rig]:
    """The dev rig (SQLite), or a worker of the test's own on a PostgreSQL database."""
    if request.param == "sqlite":
        yield dev_rig
        return
    url = request.getfixturevalue("postgres_url")
    settings = test_settings(tmp_path, url)
    engine = make_engine(url)
    sim = make_sim()
    async with running_worker(dev_rig.client, settings, engine, sim.adapter):
        yield Rig(dev_rig.env, engine, settings, sim)
    engine.dispose()


async def funded_program(rig: Rig, *, room: int, sources: tuple[str, ...]) -> Program:
    """A program whose every source pays ``room`` premiums of every village category; the
    simulated BPJS forgets earlier tests' people (tests reuse NIKs)."""
    await rig.sim.simulator.reset()
    start = (await server_today(rig.env)).replace(day=1)
    code = f"R-{uuid.uuid4().hex[:8]}"
    create_program(
        rig.engine,
        ProgramSpec(
            code=code,
            name="approval race",
            period_start=start,
            period_end=add_months(start, 3) - dt.timedelta(days=1),
            funding_sources=[
                FundingSourceSpec(s, s, room * PREMIUM, VILLAGE_CATEGORIES) for s in sources
            ],
        ),
    )
    with Session(rig.engine) as session:
        found = session.get(Program, code)
        assert found is not None
        return found


async def verified(rig: Rig, program: Program, count: int) -> list[str]:
    rows = [worker_row(serial) for serial in range(1, count + 1)]
    result = await nominate_rows(rig, program, rows)
    assert result.rejected == [], result.rejected
    ids = [a.enrollment_id for a in result.accepted]
    assert all(o.ok for o in await verify(rig, ids))
    return ids


async def approve(rig: Rig, program: Program, ids: list[str], source: str) -> str:
    """One approval: "ok", or the reason it was refused."""
    try:
        result = await approve_budget(
            rig.client,
            rig.engine,
            program_code=program.code,
            funding_source=source,
            enrollment_ids=ids,
            actor=BUDGET_OFFICER,
            task_queue=rig.settings.task_queue,
        )
    except StepRefused as exc:
        return exc.message
    refused = [o for o in result.outcomes if not o.ok]
    return "ok" if not refused else f"refused per id: {refused}"


async def assert_funded_once(rig: Rig, program: Program, ids: list[str]) -> int:
    """Every enrollment's workflow holds at most one commitment, the one the ledger has open;
    the ledger holds exactly the premiums of the funded; returns how many are funded."""
    with Session(rig.engine) as session:
        open_rows = list(
            session.exec(
                select(Commitment).where(
                    Commitment.program_code == program.code, col(Commitment.released_at).is_(None)
                )
            )
        )
    by_enrollment: dict[str, list[Commitment]] = {}
    for row in open_rows:
        by_enrollment.setdefault(row.enrollment_id, []).append(row)
    funded = 0
    for enrollment_id in ids:
        view = await view_of(rig.client, row_of(rig.engine, enrollment_id).workflow_id)
        held = view.commitment
        ledger_rows = by_enrollment.get(enrollment_id, [])
        assert len(ledger_rows) <= 1, ledger_rows
        if held is None:
            assert ledger_rows == [], (enrollment_id, ledger_rows)
            continue
        funded += 1
        assert [(r.approval_id, r.amount_idr) for r in ledger_rows] == [
            (held.approval_id, held.amount_idr)
        ]
    assert sum(r.amount_idr for r in open_rows) == funded * PREMIUM
    return funded


async def assert_reconciled(rig: Rig, program: Program, tmp_path: Path) -> None:
    report = await reconcile(
        rig.client,
        rig.engine,
        program=program.code,
        repair=False,
        sealer=sealer_for(rig.settings),
        rate_per_s=1000,
        checkpoint=tmp_path / "reconcile.json",
    )
    assert report.differences == 0, report.shown
    assert report.workflows >= 1


async def test_a_batch_and_single_approvals_of_the_same_enrollments_fund_each_once(
    race_rig: Rig, tmp_path: Path
) -> None:
    rig = race_rig
    program = await funded_program(rig, room=20, sources=("APBD",))
    try:
        ids = await verified(rig, program, 20)
        outcomes = await asyncio.gather(
            approve(rig, program, ids, "APBD"), *(approve(rig, program, [i], "APBD") for i in ids)
        )
        funded = await assert_funded_once(rig, program, ids)
        # Whoever came first per enrollment funded it; nothing was funded twice or lost. The
        # batch is all or nothing: it funded all twenty, or a single came first and it none.
        assert funded == 20
        batch, singles = outcomes[0], outcomes[1:]
        taken = ("already funded", "not awaiting budget")  # the ledger, or the projection, saw it
        assert all(o == "ok" or any(t in o for t in taken) for o in outcomes), outcomes
        assert (batch == "ok") == (singles.count("ok") == 0), outcomes
        await assert_reconciled(rig, program, tmp_path)
    finally:
        await stop_program(rig, program.code)


async def test_two_funding_sources_approving_the_same_enrollments_fund_them_from_one(
    race_rig: Rig, tmp_path: Path
) -> None:
    rig = race_rig
    program = await funded_program(rig, room=10, sources=("APBD", "ADD"))
    try:
        ids = await verified(rig, program, 6)
        outcomes = await asyncio.gather(
            approve(rig, program, ids, "APBD"), approve(rig, program, ids, "ADD")
        )
        assert sorted(o == "ok" for o in outcomes) == [False, True], outcomes
        assert await assert_funded_once(rig, program, ids) == 6
        with Session(rig.engine) as session:
            sources = {
                row.funding_source
                for row in session.exec(select(Enrollment).where(col(Enrollment.id).in_(ids)))
            }
        assert len(sources) == 1
        await assert_reconciled(rig, program, tmp_path)
    finally:
        await stop_program(rig, program.code)


async def test_approvals_racing_for_a_small_ceiling_fund_only_what_fits(
    race_rig: Rig, tmp_path: Path
) -> None:
    rig = race_rig
    program = await funded_program(rig, room=4, sources=("APBD",))
    try:
        ids = await verified(rig, program, 10)
        outcomes = await asyncio.gather(*(approve(rig, program, [i], "APBD") for i in ids))
        assert outcomes.count("ok") == 4
        assert all(o == "ok" or "only Rp" in o for o in outcomes), outcomes
        assert await assert_funded_once(rig, program, ids) == 4
        await assert_reconciled(rig, program, tmp_path)
    finally:
        await stop_program(rig, program.code)

"""Renewal across a period boundary: program A (2 months) hands over to its successor B (the
month after). Inside A's renewal window (its last 10 days) the workflow claims B's period for the
person and reserves B's enrollment; with the village's confirmation and B's budget it continues
as new into B, otherwise it lapses at A's end and gives B's place and budget back.

Time moves straight to the moments that matter: into the window, past the period's end."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlmodel import Session, select

from bpjs_sim.simulator import person_ref
from domain.records import Actor, Commitment
from domain.worker_rows import WorkerRow
from models.tables import Enrollment, FundingSource, PeriodClaim, Program
from services.steps import StepRefused, send_step
from tests.harness import (
    BUDGET_OFFICER,
    OPERATOR,
    OTHER_VILLAGE,
    Rig,
    add_months,
    audit_of,
    commitments_of,
    committed_of,
    enroll,
    eventually,
    fund,
    make_program,
    nik,
    nominate_rows,
    row_of,
    server_today,
    stop_program,
    view_of,
    worker_row,
)
from workflows import timing
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    BudgetApproval,
    EnrollmentView,
    RenewalConfirmation,
    Termination,
)

HOUR = dt.timedelta(hours=1)
LEAD_DAYS = 10
SYSTEM = ("rentan", "system")
_people = random.Random()


def someone() -> WorkerRow:
    born = dt.date(_people.randint(1970, 1999), _people.randint(1, 12), _people.randint(1, 28))
    serial = _people.randint(1000, 8999)
    return worker_row(
        serial, nik=nik(born.day, born.month, born.year, serial), birth_date=born.isoformat()
    )


Programs = Callable[..., Any]


@pytest.fixture
async def programs(rig: Rig) -> AsyncIterator[Programs]:
    """``make(successor=True)``: A (2 months from the server's month) and B (the next month),
    or A alone; their workflows are terminated when the test ends."""
    codes: list[str] = []

    async def make(*, successor: bool = True) -> tuple[Program, Program | None]:
        start = (await server_today(rig.env)).replace(day=1)
        a_code, b_code = f"T-{uuid.uuid4().hex[:10]}", f"T-{uuid.uuid4().hex[:10]}"
        b = None
        if successor:
            b = make_program(
                rig.engine, code=b_code, start=add_months(start, 2), months=1, lead_days=LEAD_DAYS
            )
            codes.append(b_code)
        a = make_program(
            rig.engine,
            code=a_code,
            start=start,
            months=2,
            lead_days=LEAD_DAYS,
            successor=b_code if successor else None,
        )
        codes.append(a_code)
        if b is not None:
            assert b.period_start == a.period_end + dt.timedelta(days=1)
        return a, b

    yield make
    for code in codes:
        await stop_program(rig, code)


async def sleep_until(rig: Rig, moment: dt.datetime) -> None:
    """Skip the server's clock to an hour past ``moment``, in one step."""
    left = moment - await rig.env.get_current_time()
    assert left > dt.timedelta(0), f"{moment} has passed already"
    await rig.env.sleep(left + HOUR)


def trail(rig: Rig, enrollment_id: str) -> list[tuple[Any, ...]]:
    return [
        (e.action, e.actor, e.role, e.state_before, e.state_after, e.reason)
        for e in audit_of(rig.engine, enrollment_id)
        if not e.action.startswith("refused")
    ]


def claim_of(rig: Rig, program_code: str, person_key: str) -> str | None:
    """The workflow holding the person's place in the period, if any."""
    with Session(rig.engine) as session:
        claim = session.get(PeriodClaim, (program_code, person_key))
        return claim.workflow_id if claim else None


async def mismatch(rig: Rig, workflow_id: str) -> str | None:
    """What the projection shows differently from the run's records, or None: each enrollment
    row the run wrote (A's and the reserved B's) holds its last record's snapshot."""
    handle = rig.client.get_workflow_handle(workflow_id)
    records = await handle.query(EnrollmentWorkflow.records)
    view: EnrollmentView = await handle.query(EnrollmentWorkflow.view)
    last = {r.snapshot.enrollment_id: r.snapshot for r in records}
    fields = ("state", "seq", "run_id", "workflow_id", "kpj_number", "funding_source")
    with Session(rig.engine) as session:
        for enrollment_id, snapshot in last.items():
            row = session.get(Enrollment, enrollment_id)
            shown = {name: getattr(row, name) for name in fields} if row else None
            wanted = {name: getattr(snapshot, name) for name in fields}
            if shown != wanted:
                return f"{enrollment_id}: row {shown} but record {wanted}"
        own = session.get(Enrollment, view.enrollment_id)
        if own is None or own.state != view.state:
            return f"view {view.state} but row {own and own.state}"
    return None


async def projected(rig: Rig, workflow_id: str) -> EnrollmentView:
    """Right now (a step has answered) the rows show the workflow's own state."""
    problem = await mismatch(rig, workflow_id)
    assert problem is None, problem
    return await view_of(rig.client, workflow_id)


async def settled(rig: Rig, workflow_id: str, state: str) -> EnrollmentView:
    """The workflow's view shows ``state``, and the projection has followed its own steps."""

    async def check() -> EnrollmentView | None:
        view = await view_of(rig.client, workflow_id)
        if view.state != state or await mismatch(rig, workflow_id) is not None:
            return None
        return view

    return await eventually(check, what=f"{workflow_id} {state} in the projection")


async def into_renewal_window(
    rig: Rig, a: Program, b: Program, row: WorkerRow | None = None
) -> tuple[str, str]:
    """Enroll someone in A and skip into A's renewal window; the A and B enrollment ids."""
    (a_id,) = await enroll(rig, a, [row or someone()])
    await sleep_until(rig, timing.renewal_opens(a.period_end, a.renewal_lead_days))
    view = await settled(rig, a_id, "renewal_pending")
    a_row = row_of(rig.engine, a_id)
    b_id = _b_id(rig, a_id, b)
    b_row = row_of(rig.engine, b_id)
    assert (b_row.program_code, b_row.state, b_row.workflow_id, b_row.run_id) == (
        b.code,
        "renewal_pending",
        a_id,  # the same workflow carries the person into B
        a_row.run_id,
    )
    assert (b_row.person_key, b_row.village_code, b_row.premium_idr) == (
        a_row.person_key,
        a_row.village_code,
        16_800,
    )
    assert (b_row.kpj_number, b_row.funding_source) == (None, None)
    assert claim_of(rig, b.code, a_row.person_key) == a_id
    assert trail(rig, a_id)[-1] == (
        "renewal_window_opened",
        *SYSTEM,
        "active",
        "renewal_pending",
        f"next period: {b_id}",
    )
    assert trail(rig, b_id) == [
        ("renewal_reserved", *SYSTEM, "renewal_pending", "renewal_pending", "")
    ]
    assert view.next_commitment is None
    return a_id, b_id


def _b_id(rig: Rig, a_id: str, b: Program) -> str:
    person_key = row_of(rig.engine, a_id).person_key
    with Session(rig.engine) as session:
        (b_id,) = session.exec(
            select(Enrollment.id).where(
                Enrollment.program_code == b.code, Enrollment.person_key == person_key
            )
        ).all()
    return b_id


async def fund_next(rig: Rig, b: Program, b_id: str, a_id: str) -> Commitment:
    approval = await fund(rig, b, [b_id])
    assert [(o.ok, o.state, o.error) for o in approval.outcomes] == [
        (True, "renewal_pending", None)
    ]
    assert approval.committed_idr == 16_800
    view = await projected(rig, a_id)
    commitment = Commitment(approval.approval_id, b.code, b_id, "APBD", 16_800)
    assert view.next_commitment == commitment
    assert row_of(rig.engine, b_id).funding_source == "APBD"
    assert trail(rig, b_id)[-1] == (
        "renewal_budget_approved",
        BUDGET_OFFICER.name,
        "budget_officer",
        "renewal_pending",
        "renewal_pending",
        "APBD allocation",
    )
    return commitment


def open_commitments(rig: Rig, program: Program) -> list[Commitment]:
    """The program's open commitments in the ledger, as the workflow knows them."""
    with Session(rig.engine) as session:
        sources = {
            s.id: s.code
            for s in session.exec(
                select(FundingSource).where(FundingSource.program_code == program.code)
            )
        }
    return [
        Commitment(
            c.approval_id,
            c.program_code,
            c.enrollment_id,
            sources[c.funding_source_id],
            c.amount_idr,
        )
        for c in commitments_of(rig.engine, program.code)
        if c.released_at is None
    ]


async def test_renew_confirmed_and_funded_continues_into_the_next_period(
    rig: Rig, programs: Programs
) -> None:
    a, b = await programs()
    row = someone()
    (a_id,) = await enroll(rig, a, [row])
    handle = rig.client.get_workflow_handle(a_id)
    first_run = (await handle.describe()).run_id
    a_row = row_of(rig.engine, a_id)
    kpj = a_row.kpj_number
    assert kpj is not None
    a_commitment = (await view_of(rig.client, a_id)).commitment
    with pytest.raises(StepRefused, match=r"^enrollment is active; renewal is not pending$"):
        await send_step(
            rig.client,
            a_row,
            EnrollmentWorkflow.confirm_renewal,
            RenewalConfirmation(OPERATOR, True),
        )

    await sleep_until(rig, timing.renewal_opens(a.period_end, a.renewal_lead_days))
    await settled(rig, a_id, "renewal_pending")
    b_id = _b_id(rig, a_id, b)
    # Nobody nominates the person for B meanwhile: the renewing workflow holds the place.
    for village, actor in (
        (OTHER_VILLAGE, Actor("op-pagar-dewa", "village_operator", OTHER_VILLAGE)),
        (a_row.village_code, OPERATOR),
    ):
        other = await nominate_rows(rig, b, [row], village=village, actor=actor)
        assert other.accepted == []
        (refused,) = other.rejected
        assert refused.errors[0].message == (
            f"already enrolled in {b.code} (continuing a previous period)"
        )
    assert row_of(rig.engine, b_id).workflow_id == a_id

    step = await send_step(
        rig.client,
        a_row,
        EnrollmentWorkflow.confirm_renewal,
        RenewalConfirmation(OPERATOR, confirm=True, reason="still perangkat desa"),
    )
    assert step.state == "renewal_pending"
    view = await projected(rig, a_id)
    assert view.renewal_confirmed
    # The next period's budget is B's, not A's.
    wrong = Commitment("approval-wrong", a.code, a_id, "APBD", 16_800)
    with pytest.raises(StepRefused, match=f"^renewal is pending for {b.code}, not {a.code}$"):
        await send_step(
            rig.client,
            a_row,
            EnrollmentWorkflow.approve_budget,
            BudgetApproval(BUDGET_OFFICER, wrong),
        )
    b_commitment = await fund_next(rig, b, b_id, a_id)

    await sleep_until(rig, timing.end_of(a.period_end))
    view = await settled(rig, a_id, "active")
    description = await handle.describe()
    assert description.run_id != first_run  # continued as new
    assert (view.enrollment_id, view.program, view.kpj_number) == (b_id, b.code, kpj)
    assert (view.coverage_start, view.coverage_end) == (b.period_start, b.period_end)
    # The new run holds B's commitment, still open; A's stays committed (A was covered).
    assert view.commitment == b_commitment
    assert open_commitments(rig, b) == [b_commitment]
    assert open_commitments(rig, a) == [a_commitment]
    assert (committed_of(rig.engine, a.code), committed_of(rig.engine, b.code)) == (33_600, 16_800)

    b_row = row_of(rig.engine, b_id)
    assert (b_row.state, b_row.kpj_number, b_row.funding_source, b_row.workflow_id) == (
        "active",
        kpj,
        "APBD",
        a_id,
    )
    assert b_row.run_id == description.run_id
    assert (b_row.coverage_start, b_row.coverage_end) == (b.period_start, b.period_end)
    a_row = row_of(rig.engine, a_id)
    assert (a_row.state, a_row.kpj_number, a_row.coverage_end) == ("active", kpj, a.period_end)
    assert trail(rig, a_id)[-3:] == [
        ("renewal_window_opened", *SYSTEM, "active", "renewal_pending", f"next period: {b_id}"),
        (
            "renewal_confirmed",
            OPERATOR.name,
            "village_operator",
            "renewal_pending",
            "renewal_pending",
            "still perangkat desa",
        ),
        ("period_completed", *SYSTEM, "renewal_pending", "active", "renewed"),
    ]
    assert [t[0] for t in trail(rig, b_id)] == [
        "renewal_reserved",
        "renewal_budget_approved",
        "renewed",
    ]
    assert trail(rig, b_id)[-1] == (
        "renewed",
        *SYSTEM,
        "renewal_pending",
        "active",
        f"continues {a_id}",
    )
    # BPJS: registered once, extended once, same KPJ.
    counts = await rig.sim.counts()
    ref = person_ref(str(row.nik))
    assert counts["counts"][ref] == 1  # type: ignore[index]
    assert counts["extensions"][ref] == 1  # type: ignore[index]


async def test_lapse_without_confirmation_gives_back_the_next_periods_budget_and_place(
    rig: Rig, programs: Programs
) -> None:
    a, b = await programs()
    row = someone()
    a_id, b_id = await into_renewal_window(rig, a, b, row)
    handle = rig.client.get_workflow_handle(a_id)
    first_run = (await handle.describe()).run_id
    kpj = row_of(rig.engine, a_id).kpj_number
    await fund_next(rig, b, b_id, a_id)  # budget, but the village never confirms
    assert committed_of(rig.engine, b.code) == 16_800

    await sleep_until(rig, timing.end_of(a.period_end))
    assert await handle.result() == "lapsed"
    assert (await handle.describe()).run_id == first_run
    view = await settled(rig, a_id, "lapsed")
    assert (view.program, view.renewal_confirmed, view.next_commitment) == (a.code, False, None)

    reason = "period ended without village confirmation"
    assert trail(rig, a_id)[-1] == ("lapsed", *SYSTEM, "renewal_pending", "lapsed", reason)
    assert trail(rig, b_id)[-1] == (
        "renewal_cancelled",
        *SYSTEM,
        "renewal_pending",
        "lapsed",
        "lapsed without village confirmation",
    )
    # B's commitment is released and its place given back; A's period was covered.
    (commitment,) = commitments_of(rig.engine, b.code)
    assert commitment.released_at is not None
    assert commitment.release_reason == f"lapsed: {reason}"
    assert committed_of(rig.engine, b.code) == 0
    assert committed_of(rig.engine, a.code) == 33_600
    person_key = row_of(rig.engine, a_id).person_key
    assert claim_of(rig, b.code, person_key) is None
    counts = await rig.sim.counts()
    assert kpj is not None
    assert rig.sim.simulator.participants[kpj].periods == [
        (row_of(rig.engine, a_id).coverage_start, a.period_end)
    ]
    assert rig.sim.simulator.participants[kpj].person_ref not in counts["extensions"]  # type: ignore[operator]

    # The place is free: the village may nominate the person for B anew.
    nominated = await nominate_rows(rig, b, [row])
    assert [(x.enrollment_id, x.state) for x in nominated.accepted] == [(b_id, "nominated")]
    b_row = row_of(rig.engine, b_id)
    assert (b_row.state, b_row.workflow_id, b_row.seq) == ("nominated", b_id, 1)
    assert claim_of(rig, b.code, person_key) == b_id


async def test_lapse_without_a_successor_program(rig: Rig, programs: Programs) -> None:
    a, _ = await programs(successor=False)
    (a_id,) = await enroll(rig, a, [someone()])
    await sleep_until(rig, timing.renewal_opens(a.period_end, a.renewal_lead_days))
    await settled(rig, a_id, "renewal_pending")
    assert trail(rig, a_id)[-1][0::5] == ("renewal_window_opened", "the program has no successor")
    a_row = row_of(rig.engine, a_id)
    await send_step(
        rig.client, a_row, EnrollmentWorkflow.confirm_renewal, RenewalConfirmation(OPERATOR, True)
    )
    await sleep_until(rig, timing.end_of(a.period_end))
    assert await rig.client.get_workflow_handle(a_id).result() == "lapsed"
    await settled(rig, a_id, "lapsed")
    assert trail(rig, a_id)[-1] == (
        "lapsed",
        *SYSTEM,
        "renewal_pending",
        "lapsed",
        "period ended without budget for the next period, a successor program",
    )


async def test_terminate_while_renewal_is_pending_gives_back_the_next_period(
    rig: Rig, programs: Programs
) -> None:
    a, b = await programs()
    a_id, b_id = await into_renewal_window(rig, a, b)
    a_row = row_of(rig.engine, a_id)
    await send_step(
        rig.client, a_row, EnrollmentWorkflow.confirm_renewal, RenewalConfirmation(OPERATOR, True)
    )
    await fund_next(rig, b, b_id, a_id)
    effective = a.period_end - dt.timedelta(days=5)
    step = await send_step(
        rig.client, a_row, EnrollmentWorkflow.terminate, Termination(OPERATOR, "death", effective)
    )
    assert step.state == "terminated"
    # Taken at once, with the next period given back in the same write.
    a_row = row_of(rig.engine, a_id)
    assert (a_row.state, a_row.coverage_end) == ("terminated", effective)
    assert row_of(rig.engine, b_id).state == "lapsed"
    assert trail(rig, b_id)[-1][0::5] == ("renewal_cancelled", "terminated: death")
    (commitment,) = commitments_of(rig.engine, b.code)
    assert commitment.released_at is not None
    assert committed_of(rig.engine, b.code) == 0
    assert claim_of(rig, b.code, a_row.person_key) is None

    # BPJS is told afterwards; the workflow ends in A, without a renewal.
    handle = rig.client.get_workflow_handle(a_id)
    assert await handle.result() == "terminated"
    view = await projected(rig, a_id)
    assert (view.program, view.state, view.coverage_end) == (a.code, "terminated", effective)
    assert view.next_commitment is None
    assert trail(rig, a_id)[-1][0::5] == ("coverage_ended_at_bpjs", f"from {effective}")
    assert a_row.kpj_number is not None
    participant = rig.sim.simulator.participants[a_row.kpj_number]
    assert participant.terminated_on == effective
    assert participant.person_ref not in (await rig.sim.counts())["extensions"]  # type: ignore[operator]


async def test_approve_the_next_period_twice_is_refused_and_keeps_its_budget(
    rig: Rig, programs: Programs
) -> None:
    a, b = await programs()
    a_id, b_id = await into_renewal_window(rig, a, b)
    commitment = await fund_next(rig, b, b_id, a_id)
    # Sent a second time (a double click): refused whole, nothing changes.
    with pytest.raises(StepRefused) as refused:
        await fund(rig, b, [b_id])
    assert refused.value.message == (
        f"nothing committed: already funded by another approval: {b_id}"
    )
    assert (await projected(rig, a_id)).next_commitment == commitment
    assert open_commitments(rig, b) == [commitment]
    assert committed_of(rig.engine, b.code) == 16_800


async def test_renewal_refused_by_bpjs_lapses_and_releases_the_next_periods_budget(
    rig: Rig, programs: Programs
) -> None:
    """BPJS ended the person's membership on its own: the extension into B is refused for
    good, so the new period never starts and B's commitment goes back."""
    a, b = await programs()
    a_id, b_id = await into_renewal_window(rig, a, b)
    a_row = row_of(rig.engine, a_id)
    await send_step(
        rig.client, a_row, EnrollmentWorkflow.confirm_renewal, RenewalConfirmation(OPERATOR, True)
    )
    await fund_next(rig, b, b_id, a_id)
    assert a_row.kpj_number is not None
    participant = rig.sim.simulator.participants[a_row.kpj_number]
    participant.terminated_on = a.period_end - dt.timedelta(days=1)

    await sleep_until(rig, timing.end_of(a.period_end))
    handle = rig.client.get_workflow_handle(a_id)
    assert await handle.result() == "lapsed"
    view = await settled(rig, a_id, "lapsed")
    assert (view.enrollment_id, view.commitment) == (b_id, None)
    failed = trail(rig, b_id)[-1]
    assert failed[:5] == ("renewal_failed", *SYSTEM, "renewal_pending", "lapsed")
    assert failed[5].startswith("BPJS refused the extension: ")
    (commitment,) = commitments_of(rig.engine, b.code)
    assert commitment.released_at is not None
    assert committed_of(rig.engine, b.code) == 0
    assert participant.person_ref not in (await rig.sim.counts())["extensions"]  # type: ignore[operator]

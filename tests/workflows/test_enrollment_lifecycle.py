"""The enrollment lifecycle on the session's rig (time-skipping server, SQLite projection, BPJS
simulator): every human step, accepted and refused, and what each leaves in the enrollment row,
the audit log and the budget ledger. Each accepted step is one audit entry with its actor and
reason, and once a step has answered the row shows what the workflow's own records say."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from sqlmodel import Session, func, select

from activities.batch_steps import BatchActivities
from bpjs_sim.simulator import person_ref
from domain.records import Actor, Commitment
from domain.worker_rows import WorkerRow
from models.conflicts import CONFLICT_MESSAGE
from models.tables import Enrollment, FundingSource, NominationConflict, Program
from services.steps import StepRefused, send_step
from tests.harness import (
    BUDGET_OFFICER,
    OPERATOR,
    OTHER_VILLAGE,
    VERIFIER,
    VILLAGE,
    Rig,
    audit_of,
    commitments_of,
    committed_of,
    eventually,
    fund,
    nik,
    nominate_rows,
    row_of,
    verify,
    view_of,
    wait_for_state,
    worker_row,
)
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    BudgetApproval,
    EnrollmentView,
    RenewalConfirmation,
    Resubmission,
    Termination,
    Verification,
    Withdrawal,
)

SYSTEM = ("rentan", "system")
_people = random.Random()


def someone(serial_prefix: str = "", **overrides: str) -> WorkerRow:
    """A person no other test of the session enrolls (the session's BPJS simulator remembers
    everyone it registered). ``serial_prefix`` "99": unknown to the population registry."""
    born = dt.date(_people.randint(1970, 1999), _people.randint(1, 12), _people.randint(1, 28))
    if serial_prefix:
        serial = int(serial_prefix) * 100 + _people.randint(0, 99)
    else:
        serial = _people.randint(1000, 8999)  # never 98xx (covered) nor 99xx (unknown)
    fields = {"nik": nik(born.day, born.month, born.year, serial), "birth_date": born.isoformat()}
    return worker_row(serial, **{**fields, **overrides})


async def nominate_one(rig: Rig, program: Program, row: WorkerRow) -> str:
    result = await nominate_rows(rig, program, [row])
    assert result.rejected == [], result.rejected
    (accepted,) = result.accepted
    assert accepted.state == "nominated"
    return accepted.enrollment_id


def trail(rig: Rig, enrollment_id: str) -> list[tuple[Any, ...]]:
    """The enrollment's steps in the audit log: action, actor, role, states, reason."""
    return [
        (e.action, e.actor, e.role, e.state_before, e.state_after, e.reason)
        for e in audit_of(rig.engine, enrollment_id)
        if not e.action.startswith("refused_")
    ]


async def mismatch(rig: Rig, workflow_id: str) -> str | None:
    """What the projection shows differently from the workflow's run, or None: each row the run
    wrote holds its last record's snapshot, and the view's own row shows the view."""
    handle = rig.client.get_workflow_handle(workflow_id)
    view: EnrollmentView = await handle.query(EnrollmentWorkflow.view)
    records = await handle.query(EnrollmentWorkflow.records)
    last = {r.snapshot.enrollment_id: r.snapshot for r in records}
    fields = (
        "state",
        "seq",
        "run_id",
        "workflow_id",
        "kpj_number",
        "coverage_start",
        "coverage_end",
        "funding_source",
        "full_name",
    )
    with Session(rig.engine) as session:
        for enrollment_id, snapshot in last.items():
            row = session.get(Enrollment, enrollment_id)
            if row is None:
                return f"no row {enrollment_id}"
            shown = {name: getattr(row, name) for name in fields}
            wanted = {name: getattr(snapshot, name) for name in fields}
            if shown != wanted:
                return f"{enrollment_id}: row {shown} but record {wanted}"
        row = session.get(Enrollment, view.enrollment_id)
    funding = view.commitment.funding_source if view.commitment else None
    seen = (view.state, view.kpj_number, view.coverage_start, view.coverage_end, funding)
    if row is None or seen != (
        row.state,
        row.kpj_number,
        row.coverage_start,
        row.coverage_end,
        row.funding_source,
    ):
        return f"view {seen} but row {row}"
    return None


async def projected(rig: Rig, workflow_id: str) -> EnrollmentView:
    """Right now (a step has answered), the row shows the workflow's own state."""
    problem = await mismatch(rig, workflow_id)
    assert problem is None, problem
    return await view_of(rig.client, workflow_id)


async def settled(rig: Rig, workflow_id: str, state: str) -> EnrollmentView:
    """The workflow reached ``state`` on its own, and the projection followed it."""
    await wait_for_state(rig.env, workflow_id, state)

    async def check() -> EnrollmentView | None:
        if await mismatch(rig, workflow_id) is not None:
            return None
        return await view_of(rig.client, workflow_id)

    return await eventually(check, what=f"{workflow_id}'s row showing {state}")


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


async def test_enroll_walks_a_list_from_nomination_to_active(rig: Rig, program: Program) -> None:
    rows = [someone(), someone()]
    result = await nominate_rows(rig, program, rows)
    assert result.rejected == []
    assert [(a.row, a.state) for a in result.accepted] == [(1, "nominated"), (2, "nominated")]
    ids = [a.enrollment_id for a in result.accepted]
    for enrollment_id in ids:
        # Read your writes: the row is there as soon as the list was answered.
        assert (await projected(rig, enrollment_id)).state == "nominated"
    assert committed_of(rig.engine, program.code) == 0

    outcomes = await verify(rig, ids)
    assert [(o.ok, o.state) for o in outcomes] == [(True, "verified")] * 2
    for enrollment_id in ids:
        assert (await projected(rig, enrollment_id)).state == "verified"

    approval = await fund(rig, program, ids)
    assert [(o.ok, o.state) for o in approval.outcomes] == [(True, "registering")] * 2
    premium = row_of(rig.engine, ids[0]).premium_idr
    assert premium == 16_800 * 3
    assert approval.committed_idr == 2 * premium
    assert approval.remaining_idr == 10_000_000 - 2 * premium
    for enrollment_id in ids:
        # The approval's records were written before it answered; BPJS may have answered since.
        enrollment = row_of(rig.engine, enrollment_id)
        assert (enrollment.state, enrollment.seq) in (("registering", 4), ("active", 5))

    counts = await rig.sim.counts()
    for enrollment_id, row in zip(ids, rows, strict=True):
        view = await settled(rig, enrollment_id, "active")
        enrollment = row_of(rig.engine, enrollment_id)
        assert enrollment.kpj_number is not None and len(enrollment.kpj_number) == 11
        assert view.kpj_number == enrollment.kpj_number
        assert enrollment.coverage_end == program.period_end
        assert enrollment.coverage_start is not None
        assert program.period_start <= enrollment.coverage_start <= program.period_end
        assert (enrollment.funding_source, enrollment.seq, view.seq) == ("APBD", 5, 5)
        assert view.commitment == Commitment(
            approval.approval_id, program.code, enrollment_id, "APBD", premium
        )
        assert trail(rig, enrollment_id) == [
            ("nominated", OPERATOR.name, "village_operator", None, "nominated", ""),
            (
                "verified",
                VERIFIER.name,
                "dpmd_verifier",
                "nominated",
                "verified",
                "matches DPMD records",
            ),
            (
                "budget_approved",
                BUDGET_OFFICER.name,
                "budget_officer",
                "verified",
                "budget_approved",
                "APBD allocation",
            ),
            ("registration_started", *SYSTEM, "budget_approved", "registering", ""),
            ("activated", *SYSTEM, "registering", "active", ""),
        ]
        assert counts["counts"][person_ref(str(row.nik))] == 1  # type: ignore[index]
    # The approval holds one open commitment per person, and the source counts them.
    assert sorted(open_commitments(rig, program), key=lambda c: c.enrollment_id) == sorted(
        (Commitment(approval.approval_id, program.code, i, "APBD", premium) for i in ids),
        key=lambda c: c.enrollment_id,
    )
    assert committed_of(rig.engine, program.code) == 2 * premium


async def test_nominate_again_from_the_same_village_changes_nothing_and_another_is_refused(
    rig: Rig, program: Program
) -> None:
    row = someone()
    enrollment_id = await nominate_one(rig, program, row)
    again = await nominate_rows(rig, program, [row])
    assert [(a.enrollment_id, a.state) for a in again.accepted] == [(enrollment_id, "nominated")]
    other = await nominate_rows(
        rig,
        program,
        [row],
        village=OTHER_VILLAGE,
        actor=Actor("op-pagar-dewa", "village_operator", OTHER_VILLAGE),
    )
    assert other.accepted == []
    (rejected,) = other.rejected
    (error,) = rejected.errors
    assert error.field == "nik"
    # The other village learns nothing of the holder; DPMD's queue has both villages.
    assert error.message == CONFLICT_MESSAGE
    with Session(rig.engine) as session:
        count = session.exec(
            select(func.count()).where(Enrollment.program_code == program.code)
        ).one()
        conflicts = session.exec(
            select(NominationConflict).where(NominationConflict.program_code == program.code)
        ).all()
    assert count == 1
    assert [
        (c.enrollment_id, c.held_by_village, c.nominated_by_village, c.resolved_at)
        for c in conflicts
    ] == [(enrollment_id, VILLAGE, OTHER_VILLAGE, None)]
    view = await projected(rig, enrollment_id)
    assert (view.state, view.seq) == ("nominated", 1)
    assert row_of(rig.engine, enrollment_id).village_code == VILLAGE
    assert sorted(t[0] for t in trail(rig, enrollment_id)) == ["nominated", "nomination_conflict"]


async def test_steps_before_verification_are_refused_and_a_rejection_needs_a_reason(
    rig: Rig, program: Program
) -> None:
    enrollment_id = await nominate_one(rig, program, someone())
    row = row_of(rig.engine, enrollment_id)

    async def step(update: Any, argument: Any) -> Any:
        return await send_step(rig.client, row, update, argument)

    with pytest.raises(StepRefused, match=r"^a rejection needs a reason$"):
        await step(EnrollmentWorkflow.verify, Verification(VERIFIER, approve=False, reason="  "))
    # The budget officer cannot commit anything to an unverified enrollment...
    with pytest.raises(StepRefused) as refused:
        await fund(rig, program, [enrollment_id])
    assert refused.value.message == (
        f"nothing committed: {enrollment_id}: is nominated, not awaiting budget"
    )
    assert commitments_of(rig.engine, program.code) == []
    # ... nor can the workflow be told so directly.
    commitment = Commitment("approval-direct", program.code, enrollment_id, "APBD", 50_400)
    with pytest.raises(StepRefused, match=r"^enrollment is nominated; it cannot become budget_"):
        await step(EnrollmentWorkflow.approve_budget, BudgetApproval(BUDGET_OFFICER, commitment))
    with pytest.raises(StepRefused, match=r"^a withdrawal needs a reason$"):
        await step(EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, " "))
    with pytest.raises(StepRefused, match=r"^enrollment is nominated; it cannot become terminated"):
        await step(
            EnrollmentWorkflow.terminate, Termination(OPERATOR, "death", program.period_start)
        )
    with pytest.raises(StepRefused, match=r"^enrollment is nominated; renewal is not pending$"):
        await step(EnrollmentWorkflow.confirm_renewal, RenewalConfirmation(OPERATOR, confirm=True))
    with pytest.raises(
        StepRefused, match=r"^enrollment is nominated; it cannot become registering"
    ):
        await step(
            EnrollmentWorkflow.resubmit, Resubmission(OPERATOR, "typo", full_name="Warga Benar")
        )
    # Nothing of the refused steps reached the workflow or the projection.
    view = await projected(rig, enrollment_id)
    assert (view.state, view.seq, view.commitment) == ("nominated", 1, None)
    assert [t[0] for t in trail(rig, enrollment_id)] == ["nominated"]
    # The refused budget approval is audited (Temporal keeps no trace of it).
    refusals = [e for e in audit_of(rig.engine, enrollment_id) if e.action.startswith("refused")]
    assert [(e.action, e.actor, e.reason) for e in refusals] == [
        ("refused_budget_approval", BUDGET_OFFICER.name, refused.value.message)
    ]

    (outcome,) = await verify(rig, [enrollment_id], approve=False, reason="not in the SK")
    assert (outcome.ok, outcome.state) == (True, "rejected")
    assert (await projected(rig, enrollment_id)).state == "rejected"
    handle = rig.client.get_workflow_handle(enrollment_id)
    assert await handle.result() == "rejected"
    # Closed: no further step is taken.
    with pytest.raises(StepRefused):
        await step(EnrollmentWorkflow.verify, Verification(VERIFIER, approve=True))
    assert trail(rig, enrollment_id) == [
        ("nominated", OPERATOR.name, "village_operator", None, "nominated", ""),
        ("rejected", VERIFIER.name, "dpmd_verifier", "nominated", "rejected", "not in the SK"),
    ]
    assert commitments_of(rig.engine, program.code) == []


async def test_nominate_again_after_a_rejection_starts_a_new_run(
    rig: Rig, program: Program
) -> None:
    row = someone()
    enrollment_id = await nominate_one(rig, program, row)
    await verify(rig, [enrollment_id], approve=False, reason="wrong village")
    first_run = row_of(rig.engine, enrollment_id).run_id
    assert await rig.client.get_workflow_handle(enrollment_id).result() == "rejected"

    assert await nominate_one(rig, program, row) == enrollment_id
    view = await projected(rig, enrollment_id)
    assert (view.state, view.seq) == ("nominated", 1)
    enrollment = row_of(rig.engine, enrollment_id)
    assert enrollment.run_id != first_run
    assert [(t[0], t[4]) for t in trail(rig, enrollment_id)] == [
        ("nominated", "nominated"),
        ("rejected", "rejected"),
        ("nominated", "nominated"),
    ]
    # The new run goes on as any nomination does.
    (outcome,) = await verify(rig, [enrollment_id])
    assert (outcome.ok, outcome.state) == (True, "verified")
    assert (await projected(rig, enrollment_id)).state == "verified"


async def test_withdraw_a_verified_enrollment_after_refused_second_steps(
    rig: Rig, program: Program
) -> None:
    row = someone()
    enrollment_id = await nominate_one(rig, program, row)
    (outcome,) = await verify(rig, [enrollment_id], reason="")
    assert (outcome.ok, outcome.state) == (True, "verified")
    enrollment = row_of(rig.engine, enrollment_id)

    (again,) = await verify(rig, [enrollment_id])
    assert (again.ok, again.error) == (False, "enrollment is verified; it cannot become verified")
    (reject,) = await verify(rig, [enrollment_id], approve=False, reason="changed my mind")
    assert (reject.ok, reject.error) == (False, "enrollment is verified; it cannot become rejected")
    other = Commitment("approval-other", "ME-OTHER", enrollment_id, "APBD", 50_400)
    with pytest.raises(StepRefused, match=f"^enrollment belongs to {program.code}, not ME-OTHER$"):
        await send_step(
            rig.client,
            enrollment,
            EnrollmentWorkflow.approve_budget,
            BudgetApproval(BUDGET_OFFICER, other),
        )
    with pytest.raises(StepRefused, match=r"^a withdrawal needs a reason$"):
        await send_step(
            rig.client, enrollment, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "")
        )
    assert (await projected(rig, enrollment_id)).state == "verified"
    refused = [e for e in audit_of(rig.engine, enrollment_id) if e.action.startswith("refused")]
    assert [(e.action, e.actor) for e in refused] == [("refused_verification", VERIFIER.name)] * 2

    result = await send_step(
        rig.client, enrollment, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "moved away")
    )
    assert result.state == "withdrawn"
    assert (await projected(rig, enrollment_id)).state == "withdrawn"
    assert await rig.client.get_workflow_handle(enrollment_id).result() == "withdrawn"
    assert trail(rig, enrollment_id) == [
        ("nominated", OPERATOR.name, "village_operator", None, "nominated", ""),
        ("verified", VERIFIER.name, "dpmd_verifier", "nominated", "verified", ""),
        ("withdrawn", OPERATOR.name, "village_operator", "verified", "withdrawn", "moved away"),
    ]
    # Nothing was committed, so nothing is released.
    assert commitments_of(rig.engine, program.code) == []

    # Withdrawn people may be nominated again in the same period: a new run.
    assert await nominate_one(rig, program, row) == enrollment_id
    assert (await projected(rig, enrollment_id)).state == "nominated"


async def test_withdraw_racing_a_budget_approval_gets_its_commitment_released(
    rig: Rig, program: Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval has committed the premium in the ledger; the village withdraws the person
    before the workflow hears of the budget: the workflow has ended, the approval's Update
    finds nobody to take it, and the approval releases its own commitment."""
    enrollment_id = await nominate_one(rig, program, someone())
    await verify(rig, [enrollment_id])
    send = BatchActivities._step
    seen: list[tuple[int, str]] = []  # what the ledger held, and the withdrawal's answer

    async def withdrawn_meanwhile(
        self: BatchActivities, workflow_id: str, update: Any, step: Any, batch_id: str
    ) -> Any:
        # Once, and without asserting here: a failure inside the batch's activity would only
        # make it run again.
        if workflow_id == enrollment_id and isinstance(step, BudgetApproval) and not seen:
            held = committed_of(rig.engine, program.code)
            withdrawn = await send_step(
                rig.client,
                row_of(rig.engine, enrollment_id),
                EnrollmentWorkflow.withdraw,
                Withdrawal(OPERATOR, "died"),
            )
            seen.append((held, withdrawn.state))
            await rig.client.get_workflow_handle(workflow_id).result()
        return await send(self, workflow_id, update, step, batch_id)

    monkeypatch.setattr(BatchActivities, "_step", withdrawn_meanwhile)
    approval = await fund(rig, program, [enrollment_id])
    premium = row_of(rig.engine, enrollment_id).premium_idr
    assert seen == [(premium, "withdrawn")]  # the ledger held the premium when it was withdrawn
    (outcome,) = approval.outcomes
    assert (outcome.ok, outcome.error) == (
        False,
        "the enrollment's workflow has ended; no step can be taken",
    )
    assert approval.committed_idr == 0

    enrollment = row_of(rig.engine, enrollment_id)
    assert (enrollment.state, enrollment.funding_source) == ("withdrawn", None)
    (commitment,) = commitments_of(rig.engine, program.code)
    assert (commitment.approval_id, commitment.enrollment_id) == (
        approval.approval_id,
        enrollment_id,
    )
    assert commitment.released_at is not None
    assert committed_of(rig.engine, program.code) == 0
    assert [t[0] for t in trail(rig, enrollment_id)] == ["nominated", "verified", "withdrawn"]
    refusals = [e for e in audit_of(rig.engine, enrollment_id) if e.action.startswith("refused")]
    assert [(e.action, e.actor) for e in refusals] == [
        ("refused_budget_approval", BUDGET_OFFICER.name)
    ]


async def test_withdraw_after_a_failed_registration_releases_the_commitment_it_kept(
    rig: Rig, program: Program
) -> None:
    row = someone("99")  # unknown to the population registry
    enrollment_id = await nominate_one(rig, program, row)
    await verify(rig, [enrollment_id])
    approval = await fund(rig, program, [enrollment_id])
    premium = row_of(rig.engine, enrollment_id).premium_idr

    view = await settled(rig, enrollment_id, "registration_failed")
    enrollment = row_of(rig.engine, enrollment_id)
    assert (enrollment.kpj_number, enrollment.funding_source) == (None, "APBD")
    # The budget stays committed while DPMD may correct the data and resubmit.
    held = Commitment(approval.approval_id, program.code, enrollment_id, "APBD", premium)
    assert view.commitment == held
    assert open_commitments(rig, program) == [held]
    assert committed_of(rig.engine, program.code) == premium
    failed = trail(rig, enrollment_id)[-1]
    assert failed[:5] == ("registration_failed", *SYSTEM, "registering", "registration_failed")
    assert "population registry" in failed[5]

    with pytest.raises(StepRefused, match=r"^a withdrawal needs a reason$"):
        await send_step(
            rig.client, enrollment, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "")
        )
    result = await send_step(
        rig.client,
        enrollment,
        EnrollmentWorkflow.withdraw,
        Withdrawal(OPERATOR, "NIK cannot be corrected in time"),
    )
    assert result.state == "withdrawn"
    view = await projected(rig, enrollment_id)
    assert (view.state, view.commitment) == ("withdrawn", None)
    assert await rig.client.get_workflow_handle(enrollment_id).result() == "withdrawn"
    assert trail(rig, enrollment_id)[-1] == (
        "withdrawn",
        OPERATOR.name,
        "village_operator",
        "registration_failed",
        "withdrawn",
        "NIK cannot be corrected in time",
    )
    (commitment,) = commitments_of(rig.engine, program.code)
    assert commitment.released_at is not None
    assert commitment.release_reason == "withdrawn: NIK cannot be corrected in time"
    assert committed_of(rig.engine, program.code) == 0
    assert person_ref(str(row.nik)) not in (await rig.sim.counts())["counts"]  # type: ignore[operator]


async def test_terminate_during_coverage_ends_it_at_once_and_tells_bpjs(
    rig: Rig, program: Program
) -> None:
    row = someone()
    enrollment_id = await nominate_one(rig, program, row)
    await verify(rig, [enrollment_id])
    await fund(rig, program, [enrollment_id])
    view = await settled(rig, enrollment_id, "active")
    enrollment = row_of(rig.engine, enrollment_id)
    kpj = enrollment.kpj_number
    assert kpj is not None and view.commitment is not None

    async def terminate(termination: Termination) -> Any:
        return await send_step(rig.client, enrollment, EnrollmentWorkflow.terminate, termination)

    with pytest.raises(StepRefused, match=r"^enrollment is active; it cannot become withdrawn$"):
        await send_step(
            rig.client, enrollment, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "moved")
        )
    with pytest.raises(
        StepRefused, match=r"^reason must be one of death, left_office, moved, other"
    ):
        await terminate(Termination(OPERATOR, "retired", program.period_start))
    for outside in (
        program.period_start - dt.timedelta(days=1),
        program.period_end + dt.timedelta(days=1),
    ):
        with pytest.raises(StepRefused, match=r"^effective date must fall within"):
            await terminate(Termination(OPERATOR, "death", outside))
    assert (await projected(rig, enrollment_id)).state == "active"

    effective = program.period_start + dt.timedelta(days=40)
    result = await terminate(
        Termination(OPERATOR, "left_office", effective, note="SK pemberhentian 12/2025")
    )
    assert result.state == "terminated"
    # Taken at once: the row shows the coverage ending on the effective date.
    enrollment = row_of(rig.engine, enrollment_id)
    assert (enrollment.state, enrollment.kpj_number, enrollment.coverage_end) == (
        "terminated",
        kpj,
        effective,
    )
    handle = rig.client.get_workflow_handle(enrollment_id)
    assert await handle.result() == "terminated"
    view = await projected(rig, enrollment_id)
    assert (view.state, view.kpj_number, view.coverage_end) == ("terminated", kpj, effective)
    with pytest.raises(StepRefused):
        await terminate(Termination(OPERATOR, "death", effective))
    # BPJS was told afterwards: its coverage ends on the effective date.
    assert rig.sim.simulator.participants[kpj].terminated_on == effective
    assert trail(rig, enrollment_id)[-2:] == [
        (
            "terminated",
            OPERATOR.name,
            "village_operator",
            "active",
            "terminated",
            "left_office: SK pemberhentian 12/2025",
        ),
        ("coverage_ended_at_bpjs", *SYSTEM, "terminated", "terminated", f"from {effective}"),
    ]
    # The period's premium stays committed: the person was covered.
    assert open_commitments(rig, program) == [view.commitment]
    # A terminated person is not nominated again for the same period.
    again = await nominate_rows(rig, program, [row])
    assert again.accepted == []
    (rejected,) = again.rejected
    assert rejected.errors[0].message == (
        f"this person's enrollment {enrollment_id} for {program.code} ended terminated; "
        "it cannot be nominated again for the same period"
    )

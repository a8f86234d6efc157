"""The enrollment lifecycle on the time-skipping server, against a real database and BPJS sim:
every human step, accepted and refused, and what each leaves in the projection, the decisions,
the budget ledger and the audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

import services.steps
from models.audit_chain import verify_chain
from models.tables import AuditEvent, Decision, Enrollment, Program
from core.settings import Settings
from services.steps import StepRefused, approve_budget, send_step
from tests.harness import (
    BUDGET_OFFICER,
    OPERATOR,
    OTHER_VILLAGE,
    VERIFIER,
    audit_of,
    enroll,
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
from workflows.messages import (
    Actor,
    BudgetCommitment,
    RenewalConfirmation,
    Resubmission,
    Termination,
    Verification,
    Withdrawal,
)

PREMIUM_3_MONTHS = 16_800 * 3


async def dated_program(env: WorkflowEnvironment, engine: Engine, **kwargs: Any) -> Program:
    """A 3-month program from the first of the server's current month."""
    return make_program(engine, start=(await server_today(env)).replace(day=1), **kwargs)


def decisions_of(engine: Engine, enrollment_id: str) -> list[tuple[str, str, str, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(Decision)
            .where(Decision.enrollment_id == enrollment_id)
            .order_by(col(Decision.id))
        ).all()
        return [(d.action, d.actor, d.role, d.reason) for d in rows]


async def nominate_one(
    env: WorkflowEnvironment, engine: Engine, settings: Settings, program: Program, serial: int
) -> str:
    result = await nominate_rows(
        env.client, engine, settings, program, [worker_row(serial)], today=await server_today(env)
    )
    assert result.rejected == []
    (accepted,) = result.accepted
    assert accepted.state == "nominated"
    return accepted.enrollment_id


async def test_enrollment_goes_from_nomination_to_active(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    sim = make_sim()
    program = await dated_program(env, engine)
    async with running_worker(client, settings, engine, sim):
        enrollment_id = await nominate_one(env, engine, settings, program, 1)
        # Read your writes: the row exists as soon as the nomination was answered.
        assert row_of(engine, enrollment_id).state == "nominated"

        step = await send_step(
            client,
            enrollment_id,
            EnrollmentWorkflow.verify,
            Verification(actor=VERIFIER, approve=True, reason="matches DPMD records"),
        )
        assert step.state == "verified"
        assert row_of(engine, enrollment_id).state == "verified"

        approval = await approve_budget(
            client,
            engine,
            program_code=program.code,
            funding_source="APBD",
            enrollment_ids=[enrollment_id],
            actor=BUDGET_OFFICER,
        )
        assert [o.ok for o in approval.outcomes] == [True]
        assert approval.committed_idr == PREMIUM_3_MONTHS
        # Read your writes: the registration activity writes the approval, and the call only
        # answered once the projection showed it.
        assert row_of(engine, enrollment_id).state in ("registering", "active")
        assert approval.outcomes[0].seq >= 4

        view = await wait_for_state(env, enrollment_id, "active")
        row = row_of(engine, enrollment_id)
        assert row.state == "active"
        assert row.kpj_number and len(row.kpj_number) == 11
        assert view.kpj_number == row.kpj_number
        assert row.coverage_end == view.coverage_end == program.period_end
        assert row.coverage_start == view.coverage_start
        assert row.funding_source == view.funding_source == "APBD"
        assert row.seq == view.seq == 5
        counts = await sim.counts()
        assert counts["total"] == 1

    assert [e.action for e in audit_of(engine, enrollment_id)] == [
        "nominated",
        "verified",
        "budget_approved",
        "registration_started",
        "activated",
    ]
    assert decisions_of(engine, enrollment_id) == [
        ("verified", "dpmd-verifier", "dpmd_verifier", "matches DPMD records"),
        ("budget_approved", "budget-officer", "budget_officer", ""),
    ]
    assert [(e.kind, e.amount_idr) for e in ledger_of(engine, program.code)] == [
        ("commit", PREMIUM_3_MONTHS)
    ]
    with Session(engine) as session:
        assert verify_chain(session).ok


async def test_duplicate_nomination_from_another_village_points_to_existing(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    program = await dated_program(env, engine)
    today = await server_today(env)
    async with running_worker(client, settings, engine, make_sim()):
        first = await nominate_rows(client, engine, settings, program, [worker_row(7)], today=today)
        (accepted,) = first.accepted
        again = await nominate_rows(client, engine, settings, program, [worker_row(7)], today=today)
        assert [a.enrollment_id for a in again.accepted] == [accepted.enrollment_id]
        other = await nominate_rows(
            client,
            engine,
            settings,
            program,
            [worker_row(7)],
            village=OTHER_VILLAGE,
            actor=Actor("op-pagar-dewa", "village_operator", OTHER_VILLAGE),
            today=today,
        )
    assert other.accepted == []
    (rejected,) = other.rejected
    assert rejected.errors[0].field == "nik"
    assert accepted.enrollment_id in rejected.errors[0].message
    assert "16.03.01.2011" in rejected.errors[0].message
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Enrollment)).one() == 1
    assert row_of(engine, accepted.enrollment_id).village_code == "16.03.01.2011"
    assert [e.action for e in audit_of(engine, accepted.enrollment_id)] == ["nominated"]


async def test_steps_refused_before_verification_then_rejection_with_reason(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    program = await dated_program(env, engine)
    async with running_worker(client, settings, engine, make_sim()):
        enrollment_id = await nominate_one(env, engine, settings, program, 11)

        with pytest.raises(StepRefused, match="a rejection needs a reason"):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.verify,
                Verification(actor=VERIFIER, approve=False, reason="   "),
            )
        # The budget officer cannot commit anything to an unverified enrollment...
        with pytest.raises(StepRefused, match=r"nothing committed: .* is nominated") as refused:
            await approve_budget(
                client,
                engine,
                program_code=program.code,
                funding_source="APBD",
                enrollment_ids=[enrollment_id],
                actor=BUDGET_OFFICER,
            )
        assert enrollment_id in refused.value.message
        assert ledger_of(engine, program.code) == []
        assert source_of(engine, program.code).committed_idr == 0
        # ... nor can the workflow be told so directly.
        with pytest.raises(StepRefused, match="enrollment is nominated; it cannot become budget"):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.approve_budget,
                BudgetCommitment(
                    actor=BUDGET_OFFICER,
                    program_code=program.code,
                    funding_source="APBD",
                    amount_idr=PREMIUM_3_MONTHS,
                ),
            )
        with pytest.raises(StepRefused, match="a withdrawal needs a reason"):
            await send_step(
                client, enrollment_id, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, " ")
            )
        with pytest.raises(StepRefused, match="enrollment is nominated; it cannot become term"):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.terminate,
                Termination(OPERATOR, "death", program.period_start),
            )
        with pytest.raises(StepRefused, match="renewal is not pending"):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.confirm_renewal,
                RenewalConfirmation(OPERATOR, confirm=True),
            )
        with pytest.raises(StepRefused, match="enrollment is nominated; it cannot become reg"):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.resubmit,
                Resubmission(OPERATOR, "typo", full_name="Warga Benar"),
            )
        # Nothing of the refused steps reached the projection.
        assert row_of(engine, enrollment_id).state == "nominated"
        assert row_of(engine, enrollment_id).seq == 1
        assert decisions_of(engine, enrollment_id) == []

        step = await send_step(
            client,
            enrollment_id,
            EnrollmentWorkflow.verify,
            Verification(actor=VERIFIER, approve=False, reason="not in the village's SK"),
        )
        assert step.state == "rejected"
        handle = client.get_workflow_handle(enrollment_id)
        assert await handle.result() == "rejected"
        view = await handle.query(EnrollmentWorkflow.view)
        assert view.state == "rejected"
        # Closed: no further step is taken.
        with pytest.raises(StepRefused):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.verify,
                Verification(actor=VERIFIER, approve=True),
            )

    assert row_of(engine, enrollment_id).state == "rejected"
    assert decisions_of(engine, enrollment_id) == [
        ("rejected", "dpmd-verifier", "dpmd_verifier", "not in the village's SK")
    ]
    events = audit_of(engine, enrollment_id)
    assert [(e.action, e.state_before, e.state_after) for e in events] == [
        ("nominated", None, "nominated"),
        ("rejected", "nominated", "rejected"),
    ]
    assert events[1].reason == "not in the village's SK"
    assert ledger_of(engine, program.code) == []


async def test_verify_twice_is_refused_and_a_verified_enrollment_can_be_withdrawn(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    program = await dated_program(env, engine)
    async with running_worker(client, settings, engine, make_sim()):
        enrollment_id = await nominate_one(env, engine, settings, program, 3)
        await send_step(
            client,
            enrollment_id,
            EnrollmentWorkflow.verify,
            Verification(actor=VERIFIER, approve=True),
        )
        with pytest.raises(StepRefused, match="enrollment is verified; it cannot become verified"):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.verify,
                Verification(actor=VERIFIER, approve=True),
            )
        with pytest.raises(StepRefused, match="enrollment is verified; it cannot become rejected"):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.verify,
                Verification(actor=VERIFIER, approve=False, reason="changed my mind"),
            )
        with pytest.raises(StepRefused, match=r"enrollment belongs to .*, not ME-OTHER"):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.approve_budget,
                BudgetCommitment(BUDGET_OFFICER, "ME-OTHER", "APBD", PREMIUM_3_MONTHS),
            )
        with pytest.raises(StepRefused, match="a withdrawal needs a reason"):
            await send_step(
                client, enrollment_id, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "")
            )
        result = await send_step(
            client,
            enrollment_id,
            EnrollmentWorkflow.withdraw,
            Withdrawal(actor=OPERATOR, reason="moved away"),
        )
        assert result.state == "withdrawn"
        handle = client.get_workflow_handle(enrollment_id)
        assert await handle.result() == "withdrawn"
        assert (await handle.query(EnrollmentWorkflow.view)).state == "withdrawn"

    assert row_of(engine, enrollment_id).state == "withdrawn"
    assert decisions_of(engine, enrollment_id) == [
        ("verified", "dpmd-verifier", "dpmd_verifier", ""),
        ("withdrawn", OPERATOR.name, "village_operator", "moved away"),
    ]
    assert [e.action for e in audit_of(engine, enrollment_id)] == [
        "nominated",
        "verified",
        "withdrawn",
    ]
    # Nothing was committed, so nothing is released.
    assert ledger_of(engine, program.code) == []
    assert source_of(engine, program.code).committed_idr == 0


async def test_withdrawal_racing_budget_approval_releases_the_commitment(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The budget officer's batch is committed in the ledger, then the village withdraws the
    person before the workflow hears of the budget: the commitment is given back."""
    env = time_skipping_env
    client = env.client
    program = await dated_program(env, engine)
    commit_one = services.steps._commit_one

    async def withdrawn_meanwhile(
        _client: Any, _engine: Engine, enrollment_id: str, *a: Any, **kw: Any
    ) -> Any:
        # The ledger holds the premium now; the village's withdrawal lands first.
        assert source_of(engine, program.code).committed_idr == PREMIUM_3_MONTHS
        await send_step(
            client, enrollment_id, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "died")
        )
        return await commit_one(_client, _engine, enrollment_id, *a, **kw)

    monkeypatch.setattr(services.steps, "_commit_one", withdrawn_meanwhile)
    async with running_worker(client, settings, engine, make_sim()):
        enrollment_id = await nominate_one(env, engine, settings, program, 4)
        await send_step(
            client, enrollment_id, EnrollmentWorkflow.verify, Verification(VERIFIER, True)
        )
        approval = await approve_budget(
            client,
            engine,
            program_code=program.code,
            funding_source="APBD",
            enrollment_ids=[enrollment_id],
            actor=BUDGET_OFFICER,
        )
        (outcome,) = approval.outcomes
        assert not outcome.ok
        # The withdrawn workflow has ended: the budget's Update finds nobody to take it.
        assert outcome.error == "the enrollment's workflow has ended; no step can be taken"
        assert approval.committed_idr == 0
        assert await client.get_workflow_handle(enrollment_id).result() == "withdrawn"

    assert row_of(engine, enrollment_id).state == "withdrawn"
    assert row_of(engine, enrollment_id).funding_source is None
    ledger = ledger_of(engine, program.code)
    assert [(e.kind, e.amount_idr, e.enrollment_id) for e in ledger] == [
        ("commit", PREMIUM_3_MONTHS, enrollment_id),
        ("release", -PREMIUM_3_MONTHS, enrollment_id),
    ]
    assert source_of(engine, program.code).committed_idr == 0
    assert "budget_approved" not in [e.action for e in audit_of(engine, enrollment_id)]


async def test_withdrawal_of_a_failed_registration_whose_budget_was_released(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    program = await dated_program(env, engine)
    sim = make_sim()
    async with running_worker(client, settings, engine, sim):
        # Serial 99xx: the population registry does not know the NIK.
        enrollment_id = await enroll(
            env, settings, engine, program, worker_row(9901), until="registration_failed"
        )
        row = row_of(engine, enrollment_id)
        assert row.state == "registration_failed"
        assert row.kpj_number is None
        assert source_of(engine, program.code).committed_idr == 0
        assert [(e.kind, e.amount_idr) for e in ledger_of(engine, program.code)] == [
            ("commit", PREMIUM_3_MONTHS),
            ("release", -PREMIUM_3_MONTHS),
        ]
        failed = audit_of(engine, enrollment_id)[-1]
        assert (failed.action, failed.state_before, failed.state_after) == (
            "registration_failed",
            "registering",
            "registration_failed",
        )
        assert "population registry" in failed.reason

        with pytest.raises(StepRefused, match="a withdrawal needs a reason"):
            await send_step(
                client, enrollment_id, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "")
            )
        result = await send_step(
            client,
            enrollment_id,
            EnrollmentWorkflow.withdraw,
            Withdrawal(OPERATOR, "NIK cannot be corrected in time"),
        )
        assert result.state == "withdrawn"
        assert await client.get_workflow_handle(enrollment_id).result() == "withdrawn"

    assert row_of(engine, enrollment_id).state == "withdrawn"
    # Released once, at the failure; the withdrawal found nothing more to give back.
    assert len(ledger_of(engine, program.code)) == 2
    assert source_of(engine, program.code).committed_idr == 0
    assert (await sim.counts())["total"] == 0
    assert decisions_of(engine, enrollment_id)[-1] == (
        "withdrawn",
        OPERATOR.name,
        "village_operator",
        "NIK cannot be corrected in time",
    )


async def test_termination_during_coverage(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    program = await dated_program(env, engine)
    sim = make_sim()
    async with running_worker(client, settings, engine, sim):
        enrollment_id = await enroll(env, settings, engine, program, worker_row(21))
        row = row_of(engine, enrollment_id)
        assert row.state == "active" and row.kpj_number is not None
        kpj = row.kpj_number

        with pytest.raises(StepRefused, match="enrollment is active; it cannot become withdrawn"):
            await send_step(
                client, enrollment_id, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "moved")
            )
        with pytest.raises(StepRefused, match="death, left_office, moved or other"):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.terminate,
                Termination(OPERATOR, "retired", program.period_start),
            )
        for outside in (
            program.period_start - dt.timedelta(days=1),
            program.period_end + dt.timedelta(days=1),
        ):
            with pytest.raises(StepRefused, match="effective date must fall within"):
                await send_step(
                    client,
                    enrollment_id,
                    EnrollmentWorkflow.terminate,
                    Termination(OPERATOR, "death", outside),
                )
        assert row_of(engine, enrollment_id).state == "active"

        effective = program.period_start + dt.timedelta(days=40)
        result = await send_step(
            client,
            enrollment_id,
            EnrollmentWorkflow.terminate,
            Termination(OPERATOR, "left_office", effective, note="SK pemberhentian 12/2025"),
        )
        assert result.state == "terminated"
        handle = client.get_workflow_handle(enrollment_id)
        assert await handle.result() == "terminated"
        view = await handle.query(EnrollmentWorkflow.view)
        assert (view.state, view.kpj_number, view.coverage_end) == ("terminated", kpj, effective)
        with pytest.raises(StepRefused):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.terminate,
                Termination(OPERATOR, "death", effective),
            )

    row = row_of(engine, enrollment_id)
    assert (row.state, row.kpj_number, row.coverage_end) == ("terminated", kpj, effective)
    # BPJS was told: its coverage ends on the effective date.
    assert sim.simulator.participants[kpj].terminated_on == effective
    last = audit_of(engine, enrollment_id)[-1]
    assert (last.action, last.state_before, last.state_after, last.reason) == (
        "terminated",
        "active",
        "terminated",
        "left_office: SK pemberhentian 12/2025",
    )
    assert decisions_of(engine, enrollment_id)[-1][:3] == (
        "terminated",
        OPERATOR.name,
        "village_operator",
    )
    # The premium of the period stays committed: the person was covered.
    assert source_of(engine, program.code).committed_idr == PREMIUM_3_MONTHS
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(AuditEvent)).one() == 6
        assert verify_chain(session).ok

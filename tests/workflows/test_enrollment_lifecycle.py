"""The enrollment lifecycle on the time-skipping server, against a real database and BPJS sim."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from activities.audit import verify_chain
from models.tables import AuditEvent, BudgetEntry, Decision, Enrollment, FundingSource
from rentan.settings import Settings
from rentan.steps import StepRefused, approve_budget, send_step
from tests.harness import (
    BUDGET_OFFICER,
    OTHER_VILLAGE,
    VERIFIER,
    make_program,
    make_sim,
    nominate_rows,
    running_worker,
    worker_row,
)
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import Actor, Verification, Withdrawal

PREMIUM_3_MONTHS = 16_800 * 3


def row_of(engine: Engine, enrollment_id: str) -> Enrollment:
    with Session(engine) as session:
        row = session.get(Enrollment, enrollment_id)
        assert row is not None
        return row


async def test_enrollment_goes_from_nomination_to_active(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    client = time_skipping_env.client
    sim = make_sim()
    program = make_program(engine)
    async with running_worker(client, settings, engine, sim):
        result = await nominate_rows(client, settings, program, [worker_row(1)])
        assert result.rejected == []
        (accepted,) = result.accepted
        assert accepted.state == "nominated"
        # Read your writes: the row exists as soon as the nomination was answered.
        assert row_of(engine, accepted.enrollment_id).state == "nominated"

        step = await send_step(
            client,
            accepted.enrollment_id,
            EnrollmentWorkflow.verify,
            Verification(actor=VERIFIER, approve=True, reason="matches DPMD records"),
        )
        assert step.state == "verified"
        assert row_of(engine, accepted.enrollment_id).state == "verified"

        approval = await approve_budget(
            client,
            engine,
            program_code=program.code,
            funding_source="APBD",
            enrollment_ids=[accepted.enrollment_id],
            actor=BUDGET_OFFICER,
        )
        assert [o.ok for o in approval.outcomes] == [True]
        assert approval.committed_idr == PREMIUM_3_MONTHS

        handle = client.get_workflow_handle(accepted.enrollment_id)
        for _ in range(100):
            view = await handle.query(EnrollmentWorkflow.view)
            if view.state == "active":
                break
            await time_skipping_env.sleep(dt.timedelta(seconds=1))
        assert view.state == "active"
        row = row_of(engine, accepted.enrollment_id)
        assert row.state == "active"
        assert row.kpj_number and len(row.kpj_number) == 11
        assert row.coverage_end == program.period_end
        assert row.funding_source == "APBD"
        counts = await sim.counts()
        assert counts["total"] == 1

    with Session(engine) as session:
        actions = session.exec(
            select(AuditEvent.action)
            .where(AuditEvent.enrollment_id == accepted.enrollment_id)
            .order_by(AuditEvent.id)  # type: ignore[arg-type]
        ).all()
        assert actions == [
            "nominated",
            "verified",
            "budget_approved",
            "registration_started",
            "activated",
        ]
        decisions = session.exec(select(Decision)).all()
        assert [(d.action, d.actor, d.role) for d in decisions] == [
            ("verified", "dpmd-verifier", "dpmd_verifier"),
            ("budget_approved", "budget-officer", "budget_officer"),
        ]
        assert verify_chain(session).ok


async def test_duplicate_nomination_from_another_village_points_to_existing(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    client = time_skipping_env.client
    program = make_program(engine)
    async with running_worker(client, settings, engine, make_sim()):
        first = await nominate_rows(client, settings, program, [worker_row(7)])
        (accepted,) = first.accepted
        again = await nominate_rows(client, settings, program, [worker_row(7)])
        assert [a.enrollment_id for a in again.accepted] == [accepted.enrollment_id]
        other = await nominate_rows(
            client,
            settings,
            program,
            [worker_row(7)],
            village=OTHER_VILLAGE,
            actor=Actor("op-pagar-dewa", "village_operator", OTHER_VILLAGE),
        )
    assert other.accepted == []
    (rejected,) = other.rejected
    assert rejected.errors[0].field == "nik"
    assert accepted.enrollment_id in rejected.errors[0].message
    assert "16.03.01.2011" in rejected.errors[0].message
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Enrollment)).one() == 1


async def test_withdrawal_after_budget_releases_the_commitment(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    client = time_skipping_env.client
    program = make_program(engine)
    sim = make_sim()
    # Keep the registration from happening: BPJS throttles every attempt.
    await sim.client.put("/v1/faults", json={"throttle_rate": 1.0, "retry_after_s": 3600})
    async with running_worker(client, settings, engine, sim):
        (accepted,) = (await nominate_rows(client, settings, program, [worker_row(3)])).accepted
        await send_step(
            client,
            accepted.enrollment_id,
            EnrollmentWorkflow.verify,
            Verification(actor=VERIFIER, approve=True),
        )
        with pytest.raises(StepRefused, match="verified"):
            await send_step(
                client,
                accepted.enrollment_id,
                EnrollmentWorkflow.verify,
                Verification(actor=VERIFIER, approve=True),
            )
        result = await send_step(
            client,
            accepted.enrollment_id,
            EnrollmentWorkflow.withdraw,
            Withdrawal(actor=Actor("op", "village_operator"), reason="moved away"),
        )
        assert result.state == "withdrawn"
    with Session(engine) as session:
        source = session.exec(select(FundingSource).where(FundingSource.code == "APBD")).one()
        assert source.committed_idr == 0
        assert session.exec(select(func.count()).select_from(BudgetEntry)).one() == 0

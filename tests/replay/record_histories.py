"""Records the histories ``test_replay.py`` replays: run explicitly, never collected by default.

``.venv/bin/python -m pytest tests/replay/record_histories.py -k sqlite``
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from bpjs_sim.sim_config import SimConfig
from models.tables import Enrollment
from core.settings import Settings
from services.steps import approve_budget, send_step, verify_many
from tests.harness import (
    BUDGET_OFFICER,
    OPERATOR,
    VERIFIER,
    make_program,
    make_sim,
    nominate_rows,
    row_of,
    running_worker,
    worker_row,
)
from tests.replay.test_replay import HISTORIES, recorded
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    RenewalConfirmation,
    Termination,
    Verification,
    Withdrawal,
)

# --- recording ------------------------------------------------------------------------------


async def _save_runs(client: Client, workflow_id: str, name: str) -> None:
    """Every run of a workflow (renewals continue as new), oldest first."""
    run_id: str | None = (await client.get_workflow_handle(workflow_id).describe()).run_id
    runs: list[WorkflowHistory] = []
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
    for index, history in enumerate(reversed(runs), start=1):
        (HISTORIES / f"{name}-run{index}.json").write_text(history.to_json())


async def _until(env: WorkflowEnvironment, client: Client, workflow_id: str, state: str) -> None:
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(200):
        if (await handle.query(EnrollmentWorkflow.view)).state == state:
            return
        await env.sleep(dt.timedelta(hours=6))
    raise AssertionError(f"{workflow_id} never became {state}")


async def test_record_histories(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    HISTORIES.mkdir(exist_ok=True)
    client = time_skipping_env.client
    first_of_month = dt.date.today().replace(day=1)
    successor = make_program(
        engine, code="REPLAY-NEXT", start=(first_of_month + dt.timedelta(days=95)).replace(day=1)
    )
    program = make_program(engine, code="REPLAY", successor=successor.code, expiry_days=21)
    sim = make_sim(SimConfig())
    async with running_worker(client, settings, engine, sim):
        result = await nominate_rows(
            client,
            engine,
            settings,
            program,
            [
                worker_row(1),  # renewed into the next period
                worker_row(2),  # rejected
                worker_row(3),  # expires unverified
                worker_row(9901),  # unknown to the registry, then withdrawn
                worker_row(4),  # terminated during coverage
                worker_row(5),  # lapses without confirmation
            ],
        )
        renewed, rejected, expired, failed, terminated, lapsed = (
            a.enrollment_id for a in result.accepted
        )
        # As a batch verification approves: the workflow hands the record back to the caller.
        await verify_many(
            client,
            engine,
            [renewed, failed, terminated, lapsed],
            Verification(actor=VERIFIER, approve=True, reason="ok"),
        )
        await send_step(
            client,
            rejected,
            EnrollmentWorkflow.verify,
            # As the API sends a step: with the seq of the row it found the enrollment by.
            Verification(
                actor=VERIFIER,
                approve=False,
                reason="not on the DPMD roster",
                projected_seq=row_of(engine, rejected).seq,
            ),
        )
        await approve_budget(
            client,
            engine,
            program_code=program.code,
            funding_source="APBD",
            enrollment_ids=[renewed, failed, terminated, lapsed],
            actor=BUDGET_OFFICER,
        )
        await _until(time_skipping_env, client, failed, "registration_failed")
        await send_step(
            client,
            failed,
            EnrollmentWorkflow.withdraw,
            Withdrawal(OPERATOR, "wrong person", projected_seq=row_of(engine, failed).seq),
        )
        await _until(time_skipping_env, client, terminated, "active")
        await send_step(
            client,
            terminated,
            EnrollmentWorkflow.terminate,
            Termination(VERIFIER, "death", dt.date.today(), "reported by the village"),
        )
        await _until(time_skipping_env, client, renewed, "renewal_pending")
        await send_step(
            client,
            renewed,
            EnrollmentWorkflow.confirm_renewal,
            RenewalConfirmation(OPERATOR, confirm=True, reason="still serves"),
        )
        view = await client.get_workflow_handle(renewed).query(EnrollmentWorkflow.view)
        assert view.state == "renewal_pending"
        with Session(engine) as session:
            next_id = session.exec(
                # The renewed one's reservation: the lapsing enrollment holds one too.
                select(Enrollment.id).where(
                    Enrollment.program_code == successor.code, Enrollment.workflow_id == renewed
                )
            ).first()
        assert next_id is not None
        await approve_budget(
            client,
            engine,
            program_code=successor.code,
            funding_source="APBD",
            enrollment_ids=[next_id],
            actor=BUDGET_OFFICER,
        )
        await _until(time_skipping_env, client, lapsed, "lapsed")
        await _until(time_skipping_env, client, expired, "expired")
        handle = client.get_workflow_handle(renewed)
        for _ in range(50):
            if (await handle.describe()).run_id != result.accepted[0].enrollment_id and (
                await handle.query(EnrollmentWorkflow.view)
            ).program == successor.code:
                break
            await time_skipping_env.sleep(dt.timedelta(days=1))
        for name, workflow_id in (
            ("renewed", renewed),
            ("rejected", rejected),
            ("expired", expired),
            ("registration-failed-withdrawn", failed),
            ("terminated", terminated),
            ("lapsed", lapsed),
        ):
            await _save_runs(client, workflow_id, name)
    assert len(recorded()) >= 7

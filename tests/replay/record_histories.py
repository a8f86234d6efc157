"""Records the histories ``test_replay.py`` replays: run explicitly, never collected by default.

``.venv/bin/python -m pytest tests/replay/record_histories.py -p no:cacheprovider``

Run it only when workflow code changes on purpose in a way running workflows cannot follow, and
only once nothing runs the old code (README, "Changing workflow code"). It records one history
per path through the lifecycle on the session rig (the time-skipping server) and writes them to
``histories/`` (encrypted with the test payload key), replacing the set.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlmodel import Session, select
from temporalio.api.filter.v1 import WorkflowTypeFilter
from temporalio.api.workflowservice.v1 import ListClosedWorkflowExecutionsRequest

from models.tables import AuditEvent, Enrollment, Program
from services.steps import send_step
from tests.harness import (
    OPERATOR,
    VERIFIER,
    Rig,
    add_months,
    eventually,
    fund,
    make_program,
    nominate_rows,
    row_of,
    server_today,
    stop_program,
    verify,
    wait_for_state,
    worker_row,
)
from tests.replay.test_replay import HISTORIES
from workflows.batches import BATCH_WORKFLOWS
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import ExceptionResolution, RenewalConfirmation, Termination, Withdrawal


async def _save_runs(rig: Rig, workflow_id: str, name: str) -> None:
    """Every run of a workflow (renewals continue as new, a nomination after a rejection starts
    anew), oldest first, as ``<name>-run<n>.json``: the runs its audit entries name."""
    with Session(rig.engine) as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.workflow_id == workflow_id)).all()
    runs = list(dict.fromkeys(e.run_id for e in sorted(events, key=lambda e: e.occurred_at)))
    for index, run_id in enumerate(runs, start=1):
        history = await rig.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        (HISTORIES / f"{name}-run{index}.json").write_text(history.to_json())


async def test_record_histories(rig: Rig) -> None:
    HISTORIES.mkdir(exist_ok=True)
    for old in HISTORIES.glob("*.json"):
        old.unlink()
    await rig.sim.simulator.reset()
    client = rig.client
    start = (await server_today(rig.env)).replace(day=1)
    tag = uuid.uuid4().hex[:6]
    successor = make_program(rig.engine, code=f"REPLAY-NEXT-{tag}", start=add_months(start, 3))
    program = make_program(
        rig.engine, code=f"REPLAY-{tag}", start=start, successor=successor.code, expiry_days=21
    )
    rows = [
        worker_row(1),  # renewed into the next period
        worker_row(2),  # rejected, then nominated again
        worker_row(3),  # expires unverified
        worker_row(9901),  # unknown to the registry, then withdrawn
        worker_row(4),  # terminated during coverage
        worker_row(5),  # lapses without confirmation
        worker_row(9801),  # BPJS covers them already
        worker_row(6),  # terminated, BPJS has lost the KPJ: an exception DPMD closes
    ]
    accepted = (await nominate_rows(rig, program, rows)).accepted
    renewed, rejected, expired, failed, terminated, lapsed, covered, refused = (
        a.enrollment_id for a in accepted
    )
    funded = [renewed, failed, terminated, lapsed, covered, refused]
    await verify(rig, funded)
    rejection = await verify(rig, [rejected], approve=False, reason="not on the DPMD roster")
    assert rejection[0].state == "rejected"
    await fund(rig, program, funded)
    await wait_for_state(rig.env, failed, "registration_failed")
    await send_step(
        client,
        row_of(rig.engine, failed),
        EnrollmentWorkflow.withdraw,
        Withdrawal(OPERATOR, "wrong person"),
    )
    await wait_for_state(rig.env, terminated, "active")
    await send_step(
        client,
        row_of(rig.engine, terminated),
        EnrollmentWorkflow.terminate,
        Termination(VERIFIER, "death", await server_today(rig.env), "reported by the village"),
    )
    await wait_for_state(rig.env, refused, "active")
    kpj = row_of(rig.engine, refused).kpj_number
    del rig.sim.simulator.participants[str(kpj)]  # BPJS no longer knows the participant
    await send_step(
        client,
        row_of(rig.engine, refused),
        EnrollmentWorkflow.terminate,
        Termination(VERIFIER, "moved", await server_today(rig.env), "left the regency"),
    )
    await _attention(rig, refused)
    await send_step(
        client,
        row_of(rig.engine, refused),
        EnrollmentWorkflow.resolve_exception,
        ExceptionResolution(VERIFIER, retry=False, note="ended at the BPJS branch by letter"),
    )
    # Nominated again after the rejection: a second run of the same workflow.
    (again,) = (await nominate_rows(rig, program, [worker_row(2)])).accepted
    await verify(rig, [again.enrollment_id])
    await _until(rig, renewed, "renewal_pending")
    await send_step(
        client,
        row_of(rig.engine, renewed),
        EnrollmentWorkflow.confirm_renewal,
        RenewalConfirmation(OPERATOR, confirm=True, reason="still serves"),
    )
    next_id = _reservation(rig, successor, renewed)
    await fund(rig, successor, [next_id])
    await _until(rig, lapsed, "lapsed")
    await _until(rig, expired, "expired")
    await _until(rig, renewed, "active", program=successor.code)
    for name, workflow_id in (
        ("renewed", renewed),
        ("rejected-nominated-again", rejected),
        ("expired", expired),
        ("registration-failed-withdrawn", failed),
        ("terminated", terminated),
        ("lapsed", lapsed),
        ("already-covered", covered),
        ("terminated-refused-closed", refused),
    ):
        await _save_runs(rig, workflow_id, name)
    for batch in BATCH_WORKFLOWS:
        await _save_latest_batch(rig, batch.__name__)
    await stop_program(rig, successor.code)
    await stop_program(rig, program.code)
    assert len(list(HISTORIES.glob("*.json"))) >= 13


async def _save_latest_batch(rig: Rig, workflow_type: str) -> None:
    """The newest closed batch workflow of a type (this test's own: the last to run)."""
    page = await rig.client.workflow_service.list_closed_workflow_executions(
        ListClosedWorkflowExecutionsRequest(
            namespace=rig.client.namespace,
            maximum_page_size=1000,
            type_filter=WorkflowTypeFilter(name=workflow_type),
        )
    )
    newest = max(page.executions, key=lambda e: e.close_time.ToDatetime())
    handle = rig.client.get_workflow_handle(
        newest.execution.workflow_id, run_id=newest.execution.run_id
    )
    history = await handle.fetch_history()
    (HISTORIES / f"batch-{workflow_type}-run1.json").write_text(history.to_json())


def _reservation(rig: Rig, successor: Program, workflow_id: str) -> str:
    with Session(rig.engine) as session:
        found = session.exec(
            select(Enrollment.id).where(
                Enrollment.program_code == successor.code, Enrollment.workflow_id == workflow_id
            )
        ).first()
    assert found is not None
    return found


async def _until(rig: Rig, workflow_id: str, state: str, *, program: str | None = None) -> None:
    handle = rig.client.get_workflow_handle(workflow_id)
    for _ in range(400):
        view = await handle.query(EnrollmentWorkflow.view)
        if view.state == state and (program is None or view.program == program):
            return
        await rig.env.sleep(dt.timedelta(hours=6))
    raise AssertionError(f"{workflow_id} never became {state}")


async def _attention(rig: Rig, workflow_id: str) -> None:
    async def flagged() -> str | None:
        return row_of(rig.engine, workflow_id).attention

    await eventually(flagged, what="the refused termination flagged")

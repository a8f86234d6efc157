"""Renewal across a period boundary: program A (3 months) hands over to its successor B (the next
3 months). Inside A's renewal window the workflow reserves B for the person; with the village's
confirmation and B's budget it continues as new into B, otherwise it lapses at A's end and gives
B's reservation and budget back."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from models.audit_chain import verify_chain
from activities.recording import enrollment_id_for
from bpjs_sim.simulator import person_ref
from models.tables import Enrollment, Program
from core.settings import Settings
from services.steps import StepRefused, approve_budget, send_step
from tests.harness import (
    BUDGET_OFFICER,
    OPERATOR,
    OTHER_VILLAGE,
    add_months,
    audit_of,
    enroll,
    ledger_of,
    make_program,
    make_sim,
    nik,
    nominate_rows,
    row_of,
    running_worker,
    server_today,
    source_of,
    worker_row,
)
from workflows import timing
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    Actor,
    BudgetCommitment,
    EnrollmentView,
    RenewalConfirmation,
    Termination,
)

PREMIUM = 16_800 * 3
HOUR = dt.timedelta(hours=1)


async def programs(env: WorkflowEnvironment, engine: Engine) -> tuple[Program, Program]:
    """A: 3 months from the first of the server's month; B, its successor: the next 3."""
    start = (await server_today(env)).replace(day=1)
    b = make_program(engine, code="ME-B", start=add_months(start, 3), lead_days=30)
    a = make_program(engine, code="ME-A", start=start, successor=b.code, lead_days=30)
    assert b.period_start == a.period_end + dt.timedelta(days=1)
    return a, b


async def sleep_until(env: WorkflowEnvironment, moment: dt.datetime) -> None:
    """Skip the server's clock to an hour past ``moment``."""
    left = moment - await env.get_current_time()
    assert left > dt.timedelta(0), f"{moment} has passed already"
    await env.sleep(left + HOUR)


async def view_of(env: WorkflowEnvironment, workflow_id: str) -> EnrollmentView:
    handle = env.client.get_workflow_handle(workflow_id)
    view: EnrollmentView = await handle.query(EnrollmentWorkflow.view)
    return view


async def into_renewal_window(
    env: WorkflowEnvironment,
    settings: Settings,
    engine: Engine,
    a: Program,
    b: Program,
    serial: int,
) -> tuple[str, str]:
    """Enroll a person in A, skip into A's renewal window; the A and B enrollment ids."""
    a_id = await enroll(env, settings, engine, a, worker_row(serial))
    assert row_of(engine, a_id).state == "active"
    await sleep_until(env, timing.renewal_opens(a.period_end, a.renewal_lead_days))
    a_row = row_of(engine, a_id)
    b_id = enrollment_id_for(a_row.person_key, b.code)
    assert a_row.state == "renewal_pending"
    assert (await view_of(env, a_id)).state == "renewal_pending"
    b_row = row_of(engine, b_id)
    assert (b_row.program_code, b_row.state, b_row.workflow_id, b_row.seq) == (
        b.code,
        "renewal_pending",
        a_id,  # the same workflow carries the person into B
        0,
    )
    assert (b_row.person_key, b_row.village_code, b_row.premium_idr) == (
        a_row.person_key,
        a_row.village_code,
        PREMIUM,
    )
    opened = audit_of(engine, a_id)[-1]
    assert (opened.action, opened.state_after) == ("renewal_window_opened", "renewal_pending")
    assert opened.reason == f"next period: {b_id}"
    return a_id, b_id


async def approve_next(env: WorkflowEnvironment, engine: Engine, b: Program, b_id: str) -> None:
    approval = await approve_budget(
        env.client,
        engine,
        program_code=b.code,
        funding_source="APBD",
        enrollment_ids=[b_id],
        actor=BUDGET_OFFICER,
        reason="APBD 2027",
    )
    assert [(o.ok, o.error) for o in approval.outcomes] == [(True, None)]
    assert approval.committed_idr == PREMIUM


async def test_confirmed_renewal_continues_into_the_next_period(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    a, b = await programs(env, engine)
    sim = make_sim()
    async with running_worker(client, settings, engine, sim):
        a_id = await enroll(env, settings, engine, a, worker_row(71))
        handle = client.get_workflow_handle(a_id)
        first_run = (await handle.describe()).run_id
        kpj = row_of(engine, a_id).kpj_number
        assert kpj is not None
        with pytest.raises(StepRefused, match="enrollment is active; renewal is not pending"):
            await send_step(
                client,
                a_id,
                EnrollmentWorkflow.confirm_renewal,
                RenewalConfirmation(OPERATOR, True),
            )
        await sleep_until(env, timing.renewal_opens(a.period_end, a.renewal_lead_days))
        a_row = row_of(engine, a_id)
        b_id = enrollment_id_for(a_row.person_key, b.code)
        assert a_row.state == "renewal_pending"
        assert row_of(engine, b_id).state == "renewal_pending"

        # Another village nominates the same person for B: refused, pointing at B's reservation.
        other = await nominate_rows(
            client,
            engine,
            settings,
            b,
            [worker_row(71)],
            village=OTHER_VILLAGE,
            actor=Actor("op-pagar-dewa", "village_operator", OTHER_VILLAGE),
            today=await server_today(env),
        )
        assert other.accepted == []
        (refused,) = other.rejected
        assert b_id in refused.errors[0].message
        assert "renewal_pending" in refused.errors[0].message
        assert row_of(engine, b_id).village_code == a_row.village_code

        step = await send_step(
            client,
            a_id,
            EnrollmentWorkflow.confirm_renewal,
            RenewalConfirmation(OPERATOR, confirm=True, reason="still perangkat desa"),
        )
        assert step.state == "renewal_pending"
        # The next period's budget is B's, not A's.
        with pytest.raises(StepRefused, match=f"renewal is pending for {b.code}, not {a.code}"):
            await send_step(
                client,
                a_id,
                EnrollmentWorkflow.approve_budget,
                BudgetCommitment(BUDGET_OFFICER, a.code, "APBD", PREMIUM),
            )
        await approve_next(env, engine, b, b_id)
        view = await view_of(env, a_id)
        assert (view.renewal_confirmed, view.next_budget) == (True, "APBD")

        await sleep_until(env, timing.end_of(a.period_end))
        description = await handle.describe()
        assert description.run_id != first_run  # continued as new
        view = await view_of(env, a_id)
        assert (view.enrollment_id, view.program, view.state, view.kpj_number) == (
            b_id,
            b.code,
            "active",
            kpj,
        )
        assert (view.coverage_start, view.coverage_end) == (b.period_start, b.period_end)
        counts = await sim.counts()

    b_row = row_of(engine, b_id)
    assert (b_row.state, b_row.kpj_number, b_row.funding_source, b_row.workflow_id) == (
        "active",
        kpj,
        "APBD",
        a_id,
    )
    assert (b_row.coverage_start, b_row.coverage_end) == (b.period_start, b.period_end)
    a_row = row_of(engine, a_id)
    assert (a_row.state, a_row.kpj_number, a_row.coverage_end) == ("active", kpj, a.period_end)
    assert [e.action for e in audit_of(engine, a_id)][-4:] == [
        "renewal_window_opened",
        "renewal_confirmed",
        "renewal_budget_approved",
        "period_completed",
    ]
    renewed = audit_of(engine, b_id)
    assert [(e.action, e.state_before, e.state_after, e.reason) for e in renewed] == [
        ("renewed", "renewal_pending", "active", f"continues {a_id}")
    ]
    assert renewed[0].run_id == description.run_id
    # BPJS: registered once, extended once, same KPJ.
    ref = person_ref(nik(15, 5, 1985, 71))
    assert counts["counts"] == {ref: 1}
    assert counts["extensions"] == {ref: 1}
    # Each period holds its own premium.
    assert source_of(engine, a.code).committed_idr == PREMIUM
    assert source_of(engine, b.code).committed_idr == PREMIUM
    assert [(e.enrollment_id, e.amount_idr) for e in ledger_of(engine, b.code)] == [(b_id, PREMIUM)]
    with Session(engine) as session:
        assert verify_chain(session).ok


async def test_without_confirmation_the_enrollment_lapses_and_gives_back_the_next_period(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    a, b = await programs(env, engine)
    sim = make_sim()
    async with running_worker(client, settings, engine, sim):
        a_id, b_id = await into_renewal_window(env, settings, engine, a, b, 72)
        handle = client.get_workflow_handle(a_id)
        first_run = (await handle.describe()).run_id
        await approve_next(env, engine, b, b_id)  # budget, but the village never confirms
        assert source_of(engine, b.code).committed_idr == PREMIUM

        await sleep_until(env, timing.end_of(a.period_end))
        assert await handle.result() == "lapsed"
        assert (await handle.describe()).run_id == first_run
        view = await view_of(env, a_id)
        assert (view.program, view.state, view.renewal_confirmed) == (a.code, "lapsed", False)
        counts = await sim.counts()

    assert row_of(engine, a_id).state == "lapsed"
    with Session(engine) as session:
        assert session.get(Enrollment, b_id) is None  # the reservation is gone
    assert [(e.kind, e.amount_idr) for e in ledger_of(engine, b.code)] == [
        ("commit", PREMIUM),
        ("release", -PREMIUM),
    ]
    assert source_of(engine, b.code).committed_idr == 0
    assert source_of(engine, a.code).committed_idr == PREMIUM  # A's period was covered
    lapsed = audit_of(engine, a_id)[-1]
    assert (lapsed.action, lapsed.state_before, lapsed.state_after) == (
        "lapsed",
        "renewal_pending",
        "lapsed",
    )
    assert lapsed.reason == "period ended without village confirmation"
    assert counts["extensions"] == {}
    assert counts["total"] == 1


async def test_lapse_without_a_successor_program(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    async with running_worker(client, settings, engine, make_sim()):
        enrollment_id = await enroll(env, settings, engine, program, worker_row(73))
        await sleep_until(env, timing.renewal_opens(program.period_end, program.renewal_lead_days))
        assert row_of(engine, enrollment_id).state == "renewal_pending"
        opened = audit_of(engine, enrollment_id)[-1]
        assert opened.reason == "the program has no successor"
        await send_step(
            client,
            enrollment_id,
            EnrollmentWorkflow.confirm_renewal,
            RenewalConfirmation(OPERATOR, confirm=True),
        )
        await sleep_until(env, timing.end_of(program.period_end))
        assert await client.get_workflow_handle(enrollment_id).result() == "lapsed"
    assert row_of(engine, enrollment_id).state == "lapsed"
    assert audit_of(engine, enrollment_id)[-1].reason == (
        "period ended without budget for the next period, a successor program"
    )


async def test_termination_while_renewal_is_pending_gives_back_the_next_period(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    a, b = await programs(env, engine)
    sim = make_sim()
    async with running_worker(client, settings, engine, sim):
        a_id, b_id = await into_renewal_window(env, settings, engine, a, b, 74)
        await send_step(
            client,
            a_id,
            EnrollmentWorkflow.confirm_renewal,
            RenewalConfirmation(OPERATOR, confirm=True),
        )
        await approve_next(env, engine, b, b_id)
        effective = a.period_end - dt.timedelta(days=10)
        step = await send_step(
            client, a_id, EnrollmentWorkflow.terminate, Termination(OPERATOR, "death", effective)
        )
        assert step.state == "terminated"
        handle = client.get_workflow_handle(a_id)
        assert await handle.result() == "terminated"
        # The period's end passes without a renewal.
        await env.sleep(dt.timedelta(days=20))
        assert (await view_of(env, a_id)).program == a.code

    a_row = row_of(engine, a_id)
    assert (a_row.state, a_row.coverage_end) == ("terminated", effective)
    with Session(engine) as session:
        assert session.get(Enrollment, b_id) is None
    assert source_of(engine, b.code).committed_idr == 0
    assert sum(e.amount_idr for e in ledger_of(engine, b.code)) == 0
    assert (await sim.counts())["extensions"] == {}
    assert a_row.kpj_number is not None
    assert sim.simulator.participants[a_row.kpj_number].terminated_on == effective


async def test_approving_the_next_period_twice_keeps_its_budget(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    a, b = await programs(env, engine)
    async with running_worker(client, settings, engine, make_sim()):
        a_id, b_id = await into_renewal_window(env, settings, engine, a, b, 75)
        await approve_next(env, engine, b, b_id)
        # Sent a second time (a double click): the workflow refuses, nothing changes.
        again = await approve_budget(
            client,
            engine,
            program_code=b.code,
            funding_source="APBD",
            enrollment_ids=[b_id],
            actor=BUDGET_OFFICER,
        )
        assert [o.ok for o in again.outcomes] == [False]
        assert (await view_of(env, a_id)).next_budget == "APBD"
    assert source_of(engine, b.code).committed_idr == PREMIUM

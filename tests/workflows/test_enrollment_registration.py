"""BPJS registration from the workflow: permanent refusals end in clear states (a failed
registration can be corrected and resubmitted; a person BPJS already covers keeps their KPJ),
and a retried registration registers nobody twice."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from activities.bpjs import BpjsTransient, HttpBpjsAdapter
from activities.recording import ProjectionActivities
from bpjs_sim.simulator import person_ref, preexisting_kpj
from models.tables import Decision, Person
from core.settings import Settings
from services.steps import StepRefused, approve_budget, send_step
from tests.harness import (
    BUDGET_OFFICER,
    OPERATOR,
    VERIFIER,
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
    wait_for_state,
    worker_row,
)
from workflows import timing
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    CoverageEnd,
    ExtensionRequest,
    RegistrationRequest,
    RegistrationResult,
    Resubmission,
    Transition,
    Verification,
    Withdrawal,
)

PREMIUM = 16_800 * 3


async def test_failed_registration_is_resubmitted_with_corrections(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    sim = make_sim()  # serials 99xx are unknown to the population registry
    person_nik = nik(15, 5, 1985, 9902)
    async with running_worker(client, settings, engine, sim):
        enrollment_id = await enroll(
            env,
            settings,
            engine,
            program,
            worker_row(9902, full_name="Warga Salah Eja"),
            until="registration_failed",
        )
        assert row_of(engine, enrollment_id).state == "registration_failed"
        assert source_of(engine, program.code).committed_idr == 0

        with pytest.raises(StepRefused, match="needs at least one correction"):
            await send_step(
                client, enrollment_id, EnrollmentWorkflow.resubmit, Resubmission(OPERATOR, "again")
            )
        # Resubmitted while the registry still does not know the NIK: it fails again, and
        # gives its budget back again.
        step = await send_step(
            client,
            enrollment_id,
            EnrollmentWorkflow.resubmit,
            Resubmission(OPERATOR, "name as on the KTP", full_name="Warga Salah Eja Lagi"),
        )
        assert step.state == "registering"
        await wait_for_state(env, enrollment_id, "registration_failed")
        assert source_of(engine, program.code).committed_idr == 0

        # Dukcapil corrects its record: the simulator reads its registry per request.
        sim.config.unknown_serial_prefix = ""
        step = await send_step(
            client,
            enrollment_id,
            EnrollmentWorkflow.resubmit,
            Resubmission(OPERATOR, "Dukcapil record corrected", full_name="Warga Benar"),
        )
        assert step.state == "registering"
        view = await wait_for_state(env, enrollment_id, "active")
        with pytest.raises(StepRefused, match="enrollment is active; it cannot become registering"):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.resubmit,
                Resubmission(OPERATOR, "again", full_name="Warga Lain"),
            )

    row = row_of(engine, enrollment_id)
    assert (row.state, row.full_name, row.funding_source) == ("active", "Warga Benar", "APBD")
    assert row.kpj_number is not None and row.kpj_number == view.kpj_number
    with Session(engine) as session:
        person = session.get(Person, row.person_key)
        assert person is not None and person.full_name == "Warga Benar"
        resubmissions = [
            (d.actor, d.reason, d.state_before, d.state_after)
            for d in session.exec(
                select(Decision).where(Decision.action == "resubmitted").order_by(col(Decision.id))
            )
        ]
    assert resubmissions == [
        (OPERATOR.name, "name as on the KTP", "registration_failed", "registering"),
        (OPERATOR.name, "Dukcapil record corrected", "registration_failed", "registering"),
    ]
    assert [e.action for e in audit_of(engine, enrollment_id)] == [
        "nominated",
        "verified",
        "budget_approved",
        "registration_started",
        "registration_failed",
        "resubmitted",
        "registration_failed",
        "resubmitted",
        "activated",
    ]
    # Committed, released, committed again, released again, committed for good.
    assert [e.amount_idr for e in ledger_of(engine, program.code)] == [
        PREMIUM,
        -PREMIUM,
        PREMIUM,
        -PREMIUM,
        PREMIUM,
    ]
    assert source_of(engine, program.code).committed_idr == PREMIUM
    counts = await sim.counts()
    assert counts["counts"] == {person_ref(person_nik): 1}
    assert sim.simulator.participants[row.kpj_number].periods == [
        (row.coverage_start, program.period_end)
    ]


async def test_resubmission_is_refused_when_the_budget_is_gone(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    """The failed registration gave its budget back and someone else took it: resubmitting
    is refused with the ceiling's reason, and the enrollment stays as it was."""
    env = time_skipping_env
    client = env.client
    program = make_program(
        engine, start=(await server_today(env)).replace(day=1), ceiling_idr=PREMIUM
    )
    sim = make_sim()
    async with running_worker(client, settings, engine, sim):
        failed_id = await enroll(
            env, settings, engine, program, worker_row(9903), until="registration_failed"
        )
        other_id = await enroll(env, settings, engine, program, worker_row(31))
        assert source_of(engine, program.code).committed_idr == PREMIUM

        sim.config.unknown_serial_prefix = ""
        with pytest.raises(StepRefused, match="only Rp 0 remains") as refused:
            await send_step(
                client,
                failed_id,
                EnrollmentWorkflow.resubmit,
                Resubmission(OPERATOR, "corrected", full_name="Warga Benar"),
            )
        assert refused.value.message == (
            "APBD: requested Rp 50,400 but only Rp 0 remains (short by Rp 50,400)"
        )
        view = await client.get_workflow_handle(failed_id).query(EnrollmentWorkflow.view)
        assert view.state == "registration_failed"
        # It can still be withdrawn: the refused step left nothing half done.
        await send_step(
            client, failed_id, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "no budget")
        )

    assert row_of(engine, failed_id).state == "withdrawn"
    assert row_of(engine, failed_id).full_name == "Warga Uji 9903"
    assert "resubmitted" not in [e.action for e in audit_of(engine, failed_id)]
    assert row_of(engine, other_id).state == "active"
    assert source_of(engine, program.code).committed_idr == PREMIUM
    assert (await sim.counts())["total"] == 1


async def test_failed_registration_nobody_corrects_ends_with_the_period(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    async with running_worker(client, settings, engine, make_sim()):
        enrollment_id = await enroll(
            env, settings, engine, program, worker_row(9904), until="registration_failed"
        )
        left = timing.end_of(program.period_end) - await env.get_current_time()
        await env.sleep(left - dt.timedelta(days=1))
        assert row_of(engine, enrollment_id).state == "registration_failed"
        assert audit_of(engine, enrollment_id)[-1].action == "registration_failed"
        await env.sleep(dt.timedelta(days=2))
        handle = client.get_workflow_handle(enrollment_id)
        assert await handle.result() == "registration_failed"
        with pytest.raises(StepRefused):
            await send_step(
                client,
                enrollment_id,
                EnrollmentWorkflow.resubmit,
                Resubmission(OPERATOR, "too late", full_name="Warga Benar"),
            )
    closed = audit_of(engine, enrollment_id)[-1]
    assert (closed.action, closed.state_after, closed.reason) == (
        "resubmission_window_closed",
        "registration_failed",
        "the period ended",
    )
    assert row_of(engine, enrollment_id).state == "registration_failed"
    assert source_of(engine, program.code).committed_idr == 0


async def test_person_already_covered_by_bpjs_keeps_their_kpj(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    sim = make_sim()  # serials 98xx are covered by BPJS already
    person_nik = nik(15, 5, 1985, 9801)
    async with running_worker(client, settings, engine, sim):
        enrollment_id = await enroll(
            env, settings, engine, program, worker_row(9801), until="already_covered"
        )
        handle = client.get_workflow_handle(enrollment_id)
        assert await handle.result() == "already_covered"
        view = await handle.query(EnrollmentWorkflow.view)
        with pytest.raises(StepRefused):
            await send_step(
                client, enrollment_id, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "x")
            )

    kpj = preexisting_kpj(person_nik)
    row = row_of(engine, enrollment_id)
    assert (row.state, row.kpj_number) == ("already_covered", kpj)
    assert (view.state, view.kpj_number) == ("already_covered", kpj)
    assert row.coverage_start is None and row.coverage_end is None
    last = audit_of(engine, enrollment_id)[-1]
    assert (last.action, last.state_before, last.state_after) == (
        "already_covered",
        "registering",
        "already_covered",
    )
    assert [(e.kind, e.amount_idr) for e in ledger_of(engine, program.code)] == [
        ("commit", PREMIUM),
        ("release", -PREMIUM),
    ]
    assert source_of(engine, program.code).committed_idr == 0
    counts = await sim.counts()
    assert counts["total"] == 0
    assert person_ref(person_nik) not in counts["counts"]  # type: ignore[operator]


class LosesFirstAnswer:
    """BPJS registers the person, but the first answer never reaches rentan."""

    def __init__(self, inner: HttpBpjsAdapter) -> None:
        self.inner = inner
        self.keys: list[str] = []
        self.results: list[RegistrationResult] = []

    async def register(self, request: RegistrationRequest) -> RegistrationResult:
        self.keys.append(request.idempotency_key)
        result = await self.inner.register(request)
        self.results.append(result)
        if len(self.keys) == 1:
            raise BpjsTransient("response lost")
        return result

    async def extend(self, request: ExtensionRequest) -> RegistrationResult:
        return await self.inner.extend(request)

    async def end(self, request: CoverageEnd) -> None:
        await self.inner.end(request)


async def test_registration_retried_after_a_lost_answer_registers_once(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    client = env.client
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    sim = make_sim()
    adapter = LosesFirstAnswer(sim.adapter)
    async with running_worker(client, settings, engine, sim, adapter=adapter):
        enrollment_id = await enroll(env, settings, engine, program, worker_row(41))

    assert len(adapter.keys) == 2
    assert adapter.keys[0] == adapter.keys[1]  # the retry carries the same idempotency key
    first, second = adapter.results
    assert first == second  # BPJS answered the retry with the stored registration
    row = row_of(engine, enrollment_id)
    assert (row.state, row.kpj_number) == ("active", first.kpj_number)
    assert row.coverage_end == first.coverage_end == program.period_end
    counts = await sim.counts()
    assert (counts["total"], counts["max_per_person"]) == (1, 1)
    assert counts["counts"] == {person_ref(nik(15, 5, 1985, 41)): 1}
    assert [e.action for e in audit_of(engine, enrollment_id)].count("activated") == 1


async def test_registration_survives_bpjs_outage_and_registers_once(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    """BPJS answers 503 and throttles for a while: the activity retries with backoff (and the
    Retry-After it is given) until BPJS is back; nobody is registered twice."""
    env = time_skipping_env
    client = env.client
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    sim = make_sim()
    await sim.client.put("/v1/faults", json={"fault_rate": 1.0})
    async with running_worker(client, settings, engine, sim):
        today = await server_today(env)
        rows = [worker_row(serial) for serial in (51, 52, 53)]
        result = await nominate_rows(client, engine, settings, program, rows, today=today)
        ids = [a.enrollment_id for a in result.accepted]
        assert len(ids) == 3
        for enrollment_id in ids:
            await send_step(
                client, enrollment_id, EnrollmentWorkflow.verify, Verification(VERIFIER, True)
            )
        await approve_budget(
            client,
            engine,
            program_code=program.code,
            funding_source="APBD",
            enrollment_ids=ids,
            actor=BUDGET_OFFICER,
        )
        for enrollment_id in ids:
            assert (await wait_for_state(env, enrollment_id, "registering")).state == "registering"
        await env.sleep(60)
        assert all(row_of(engine, i).state == "registering" for i in ids)
        await sim.client.put("/v1/faults", json={"throttle_rate": 1.0, "retry_after_s": 600})
        await env.sleep(60)
        await sim.client.put("/v1/faults", json={})
        for enrollment_id in ids:
            await wait_for_state(env, enrollment_id, "active", tries=1200)
        injected = (await sim.client.get("/v1/faults")).json()["injected"]

    assert injected["503"] >= 3 and injected["429"] >= 3
    assert all(row_of(engine, i).state == "active" for i in ids)
    counts = await sim.counts()
    assert (counts["total"], counts["people"], counts["max_per_person"]) == (3, 3, 1)


class FailsOneWrite:
    """The projection writer, failing the first write that carries ``action`` (the database
    went away mid-call); ``attempts`` counts the writes that carried it."""

    def __init__(self, engine: Engine, action: str) -> None:
        self.inner = ProjectionActivities(engine).record
        self.action = action
        self.attempts = 0

    async def __call__(self, steps: list[Transition]) -> None:
        if any(step.action == self.action for step in steps):
            self.attempts += 1
            if self.attempts == 1:
                raise ConnectionError("projection database unreachable")
        await self.inner(steps)


async def test_activation_write_that_fails_is_retried_and_registers_once(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    """The registration activity records the activation itself: if that write fails after BPJS
    registered the person, the retry registers under the same key (BPJS answers with the same
    KPJ) and the activation lands once, with the workflow's seq."""
    env = time_skipping_env
    client = env.client
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    sim = make_sim()
    flaky = FailsOneWrite(engine, "activated")
    async with running_worker(client, settings, engine, sim, record=flaky):
        enrollment_id = await enroll(env, settings, engine, program, worker_row(61))
        view = await wait_for_state(env, enrollment_id, "active")

    assert flaky.attempts == 2
    counts = await sim.counts()
    assert (counts["total"], counts["max_per_person"]) == (1, 1)
    row = row_of(engine, enrollment_id)
    assert (row.state, row.kpj_number, row.seq) == ("active", view.kpj_number, view.seq)
    assert row.coverage_start == view.coverage_start
    activated = [e for e in audit_of(engine, enrollment_id) if e.action == "activated"]
    assert [(e.state_before, e.state_after, e.actor) for e in activated] == [
        ("registering", "active", "rentan")
    ]


async def test_budget_record_that_fails_is_written_before_bpjs_is_asked(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    """Budget approval answers at once; the registration activity writes the decision and the
    start of the registration before it calls BPJS. If that write fails, the attempt ends before
    BPJS hears of it; the retry writes them (attributed to the budget officer, in seq order)
    and registers the person once."""
    env = time_skipping_env
    client = env.client
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    sim = make_sim()
    flaky = FailsOneWrite(engine, "budget_approved")
    async with running_worker(client, settings, engine, sim, record=flaky):
        enrollment_id = await enroll(env, settings, engine, program, worker_row(62))
        view = await wait_for_state(env, enrollment_id, "active")

    assert flaky.attempts == 2
    counts = await sim.counts()
    assert (counts["total"], counts["max_per_person"]) == (1, 1)
    row = row_of(engine, enrollment_id)
    assert (row.state, row.seq, row.funding_source) == ("active", view.seq, "APBD")
    trail = [(e.action, e.actor, e.state_after) for e in audit_of(engine, enrollment_id)]
    assert trail == [
        ("nominated", OPERATOR.name, "nominated"),
        ("verified", VERIFIER.name, "verified"),
        ("budget_approved", BUDGET_OFFICER.name, "budget_approved"),
        ("registration_started", "rentan", "registering"),
        ("activated", "rentan", "active"),
    ]
    with Session(engine) as session:
        decisions = session.exec(
            select(Decision).where(Decision.enrollment_id == enrollment_id)
        ).all()
    assert sorted((d.action, d.actor) for d in decisions) == [
        ("budget_approved", BUDGET_OFFICER.name),
        ("verified", VERIFIER.name),
    ]

"""BPJS registration from the workflow: what retrying can fix is retried and registers the
person once (an outage, a lost answer, a failed write after BPJS answered); what it cannot fix
ends in a clear state (a failed registration keeps its budget and can be corrected and
resubmitted; a person BPJS already covers keeps their KPJ and gives the budget back)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import WorkflowExecutionStatus

import activities.recording
from activities.bpjs import BpjsAdapter, BpjsTransient, InvalidParticipant
from bpjs_sim.sim_config import SimConfig
from bpjs_sim.simulator import person_ref, preexisting_kpj
from core.sealing import Sealer
from domain.records import Commitment, Record
from domain.worker_rows import WorkerRow
from models.tables import Enrollment, FundingSource, Program
from services.steps import StepRefused, send_step
from tests.conftest import test_settings
from tests.harness import (
    OPERATOR,
    VERIFIER,
    Rig,
    Sim,
    audit_of,
    commitments_of,
    committed_of,
    enroll,
    eventually,
    fund,
    make_program,
    make_sim,
    nik,
    nominate_rows,
    row_of,
    running_worker,
    server_today,
    stop_program,
    verify,
    view_of,
    wait_for_state,
    worker_row,
)
from workflows import timing
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    CoverageEnd,
    EnrollmentView,
    ExceptionResolution,
    ExtensionRequest,
    RegistrationRequest,
    RegistrationResult,
    Resubmission,
    Termination,
    Withdrawal,
)

SYSTEM = ("rentan", "system")
_people = random.Random()


def someone(serial_prefix: str = "", **overrides: str) -> WorkerRow:
    """A person no other test of the session enrolls (the session's BPJS simulator remembers
    everyone it registered). ``serial_prefix``: "99" unknown to the population registry, "98"
    covered by BPJS already."""
    born = dt.date(_people.randint(1970, 1999), _people.randint(1, 12), _people.randint(1, 28))
    if serial_prefix:
        serial = int(serial_prefix) * 100 + _people.randint(0, 99)
    else:
        serial = _people.randint(1000, 8999)
    fields = {"nik": nik(born.day, born.month, born.year, serial), "birth_date": born.isoformat()}
    return worker_row(serial, **{**fields, **overrides})


async def nominate_verify_fund(rig: Rig, program: Program, rows: list[WorkerRow]) -> list[str]:
    """The human steps up to the budget; BPJS is asked from then on."""
    result = await nominate_rows(rig, program, rows)
    assert result.rejected == [], result.rejected
    ids = [a.enrollment_id for a in result.accepted]
    assert all(o.ok for o in await verify(rig, ids))
    approval = await fund(rig, program, ids)
    assert all(o.ok for o in approval.outcomes), approval.outcomes
    return ids


def trail(rig: Rig, enrollment_id: str) -> list[tuple[Any, ...]]:
    return [
        (e.action, e.actor, e.role, e.state_before, e.state_after, e.reason)
        for e in audit_of(rig.engine, enrollment_id)
        if not e.action.startswith("refused")
    ]


async def settled(rig: Rig, enrollment_id: str, *states: str) -> EnrollmentView:
    """The workflow reached one of ``states`` on its own and the row shows it."""
    await wait_for_state(rig.env, enrollment_id, *states)

    async def check() -> EnrollmentView | None:
        view = await view_of(rig.client, enrollment_id)
        row = row_of(rig.engine, enrollment_id)
        shown = (row.state, row.seq, row.kpj_number, row.coverage_start, row.coverage_end)
        wanted = (view.state, view.seq, view.kpj_number, view.coverage_start, view.coverage_end)
        return view if shown == wanted else None

    return await eventually(check, what=f"{enrollment_id}'s row following its workflow")


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


def registrations(sim: Sim, row: WorkerRow) -> int:
    return sim.simulator.registrations[person_ref(str(row.nik))]


async def test_resubmit_a_failed_registration_with_corrections_registers_it(
    rig: Rig, program: Program
) -> None:
    row = someone(full_name="Warga Salah Eja")
    config = rig.sim.config
    # Dukcapil does not know this person's record yet (the simulator reads it per request).
    config.unknown_niks = config.unknown_niks | {str(row.nik)}
    try:
        (enrollment_id,) = await nominate_verify_fund(rig, program, [row])
        view = await settled(rig, enrollment_id, "registration_failed")
        held = view.commitment
        assert held is not None and open_commitments(rig, program) == [held]
        enrollment = row_of(rig.engine, enrollment_id)

        async def resubmit(step: Resubmission) -> Any:
            return await send_step(rig.client, enrollment, EnrollmentWorkflow.resubmit, step)

        with pytest.raises(StepRefused, match=r"^a resubmission needs at least one correction$"):
            await resubmit(Resubmission(OPERATOR, "again"))
        # Resubmitted while the registry still does not know the NIK: it fails again, and
        # still holds the same commitment.
        step = await resubmit(Resubmission(OPERATOR, "name as on the KTP", full_name="Warga Eja"))
        assert step.state == "registering"
        # Read your writes: the resubmission is recorded (BPJS may have answered since).
        assert row_of(rig.engine, enrollment_id).seq >= 6
        assert trail(rig, enrollment_id)[5][0] == "resubmitted"
        view = await settled(rig, enrollment_id, "registration_failed")
        assert view.seq == 7
        assert view.commitment == held and open_commitments(rig, program) == [held]

        config.unknown_niks = config.unknown_niks - {str(row.nik)}  # Dukcapil corrected it
        step = await resubmit(
            Resubmission(OPERATOR, "Dukcapil record corrected", full_name="Warga Benar")
        )
        assert step.state == "registering"
        view = await settled(rig, enrollment_id, "active")
    finally:
        config.unknown_niks = config.unknown_niks - {str(row.nik)}
    with pytest.raises(StepRefused, match=r"^enrollment is active; it cannot become registering$"):
        await resubmit(Resubmission(OPERATOR, "again", full_name="Warga Lain"))

    enrollment = row_of(rig.engine, enrollment_id)
    assert (enrollment.state, enrollment.full_name, enrollment.funding_source) == (
        "active",
        "Warga Benar",
        "APBD",
    )
    assert enrollment.kpj_number is not None and enrollment.kpj_number == view.kpj_number
    steps = trail(rig, enrollment_id)
    assert [s[0] for s in steps] == [
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
    assert [s[1:] for s in steps if s[0] == "resubmitted"] == [
        (
            OPERATOR.name,
            "village_operator",
            "registration_failed",
            "registering",
            "name as on the KTP",
        ),
        (
            OPERATOR.name,
            "village_operator",
            "registration_failed",
            "registering",
            "Dukcapil record corrected",
        ),
    ]
    failed = [s for s in steps if s[0] == "registration_failed"]
    assert all(s[1:5] == (*SYSTEM, "registering", "registration_failed") for s in failed)
    assert all("population registry" in s[5] for s in failed)
    # One commitment all along, held by the run and open; one registration at BPJS.
    assert view.commitment == held
    assert [c.released_at for c in commitments_of(rig.engine, program.code)] == [None]
    assert committed_of(rig.engine, program.code) == held.amount_idr
    assert registrations(rig.sim, row) == 1
    assert rig.sim.simulator.participants[enrollment.kpj_number].periods == [
        (enrollment.coverage_start, program.period_end)
    ]


async def test_failed_registration_nobody_corrects_gives_its_budget_back_when_the_period_ends(
    rig: Rig, program: Program
) -> None:
    (enrollment_id,) = await nominate_verify_fund(rig, program, [someone("99")])
    view = await settled(rig, enrollment_id, "registration_failed")
    assert view.commitment is not None
    assert committed_of(rig.engine, program.code) == view.commitment.amount_idr

    left = timing.end_of(program.period_end) - await rig.env.get_current_time()
    await rig.env.sleep(left - dt.timedelta(days=1))
    assert trail(rig, enrollment_id)[-1][0] == "registration_failed"
    assert committed_of(rig.engine, program.code) == view.commitment.amount_idr
    await rig.env.sleep(dt.timedelta(days=2))
    handle = rig.client.get_workflow_handle(enrollment_id)
    assert await handle.result() == "registration_failed"
    with pytest.raises(StepRefused):
        await send_step(
            rig.client,
            row_of(rig.engine, enrollment_id),
            EnrollmentWorkflow.resubmit,
            Resubmission(OPERATOR, "too late", full_name="Warga Benar"),
        )
    view = await settled(rig, enrollment_id, "registration_failed")
    assert view.commitment is None
    assert trail(rig, enrollment_id)[-1] == (
        "resubmission_window_closed",
        *SYSTEM,
        "registration_failed",
        "registration_failed",
        "the period ended",
    )
    (commitment,) = commitments_of(rig.engine, program.code)
    assert commitment.released_at is not None
    assert commitment.release_reason == "resubmission_window_closed: the period ended"
    assert committed_of(rig.engine, program.code) == 0


async def test_person_already_covered_by_bpjs_keeps_their_kpj_and_gives_the_budget_back(
    rig: Rig, program: Program
) -> None:
    row = someone("98")  # covered by BPJS already
    (enrollment_id,) = await nominate_verify_fund(rig, program, [row])
    view = await settled(rig, enrollment_id, "already_covered")
    handle = rig.client.get_workflow_handle(enrollment_id)
    assert await handle.result() == "already_covered"
    kpj = preexisting_kpj(str(row.nik))
    enrollment = row_of(rig.engine, enrollment_id)
    assert (enrollment.state, enrollment.kpj_number) == ("already_covered", kpj)
    assert (view.kpj_number, view.commitment) == (kpj, None)
    assert (enrollment.coverage_start, enrollment.coverage_end) == (None, None)
    assert enrollment.funding_source is None
    assert trail(rig, enrollment_id)[-1] == (
        "already_covered",
        *SYSTEM,
        "registering",
        "already_covered",
        "BPJS already covers this person",
    )
    with pytest.raises(StepRefused):
        await send_step(
            rig.client, enrollment, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "x")
        )
    (commitment,) = commitments_of(rig.engine, program.code)
    assert commitment.released_at is not None
    assert committed_of(rig.engine, program.code) == 0
    assert registrations(rig.sim, row) == 0


async def test_register_when_the_activation_cannot_be_written_retries_and_registers_once(
    rig: Rig, program: Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BPJS registered the person, then the activity's write of the activation fails (the
    database went away): the retry registers under the same idempotency key (BPJS answers with
    the same KPJ) and the activation lands once."""
    row = someone(full_name=f"Warga {uuid.uuid4().hex[:8]}")
    write = activities.recording.write_records
    attempts: list[int] = []

    def fails_once(session: Any, records: Sequence[Record], sealer: Sealer) -> None:
        if any(r.action == "activated" and r.snapshot.full_name == row.full_name for r in records):
            attempts.append(len(attempts) + 1)
            if len(attempts) == 1:
                raise ConnectionError("projection database unreachable")
        write(session, records, sealer)

    monkeypatch.setattr(activities.recording, "write_records", fails_once)
    (enrollment_id,) = await nominate_verify_fund(rig, program, [row])
    view = await settled(rig, enrollment_id, "active")

    assert attempts == [1, 2]
    assert registrations(rig.sim, row) == 1
    enrollment = row_of(rig.engine, enrollment_id)
    assert (enrollment.kpj_number, enrollment.seq) == (view.kpj_number, 5)
    activated = [s for s in trail(rig, enrollment_id) if s[0] == "activated"]
    assert activated == [("activated", *SYSTEM, "registering", "active", "")]


# --- a BPJS adapter that misbehaves: a worker of the test's own -----------------------------


@dataclasses.dataclass
class Own:
    """A worker of the test's own: its rig (own task queue, database and simulator) and a
    program in its database."""

    rig: Rig
    program: Program


OwnWorker = Callable[..., Awaitable[Own]]


@pytest.fixture
async def own_worker(
    rig: Rig, tmp_path: Path, db_url: str, engine: Engine
) -> AsyncIterator[OwnWorker]:
    """``await own_worker(adapter_of, config)``: a worker of this test's own on the session's
    test server, whose BPJS adapter is ``adapter_of(sim)`` around a simulator of its own (made
    from ``config``); its program's workflows are terminated when the test ends."""
    settings = test_settings(tmp_path, db_url)
    async with AsyncExitStack() as stack:

        async def start(
            adapter_of: Callable[[Sim], BpjsAdapter] = lambda sim: sim.adapter,
            config: SimConfig | None = None,
        ) -> Own:
            sim = make_sim(config)
            own = Rig(rig.env, engine, settings, sim)
            start_day = (await server_today(rig.env)).replace(day=1)
            program = make_program(engine, code=f"T-{uuid.uuid4().hex[:10]}", start=start_day)
            await stack.enter_async_context(
                running_worker(rig.client, settings, engine, adapter_of(sim))
            )
            stack.push_async_callback(stop_program, own, program.code)
            return Own(own, program)

        yield start


class LosesFirstAnswer:
    """BPJS registers the person, but its first answer never reaches rentan."""

    def __init__(self, inner: BpjsAdapter) -> None:
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


async def test_register_again_after_a_lost_answer_registers_once(own_worker: OwnWorker) -> None:
    adapters: list[LosesFirstAnswer] = []

    def losing(sim: Sim) -> BpjsAdapter:
        adapters.append(LosesFirstAnswer(sim.adapter))
        return adapters[-1]

    own = await own_worker(losing)
    row = someone()
    (enrollment_id,) = await enroll(own.rig, own.program, [row])
    (adapter,) = adapters

    assert len(adapter.keys) == 2
    assert adapter.keys[0] == adapter.keys[1]  # the retry carries the same idempotency key
    first, second = adapter.results
    assert first == second  # BPJS answered the retry with the stored registration
    enrollment = row_of(own.rig.engine, enrollment_id)
    assert (enrollment.state, enrollment.kpj_number) == ("active", first.kpj_number)
    assert enrollment.coverage_end == first.coverage_end == own.program.period_end
    counts = await own.rig.sim.counts()
    assert (counts["total"], counts["max_per_person"]) == (1, 1)
    assert counts["counts"] == {person_ref(str(row.nik)): 1}
    assert [s[0] for s in trail(own.rig, enrollment_id)].count("activated") == 1


async def test_register_through_a_bpjs_outage_registers_everyone_once(
    own_worker: OwnWorker,
) -> None:
    """BPJS answers 503, then throttles with a long Retry-After: the activity retries (with
    backoff, and the Retry-After it is given) until BPJS is back; nobody registers twice."""
    own = await own_worker(config=SimConfig(fault_rate=1.0))
    sim = own.rig.sim
    ids = await nominate_verify_fund(own.rig, own.program, [someone() for _ in range(3)])
    for enrollment_id in ids:
        await wait_for_state(own.rig.env, enrollment_id, "registering")
    await own.rig.env.sleep(60)
    assert all(row_of(own.rig.engine, i).state == "registering" for i in ids)
    assert sim.simulator.injected["503"] >= 3 * 5  # retried, about every 2 s
    await sim.client.put("/v1/faults", json={"throttle_rate": 1.0, "retry_after_s": 600})
    await own.rig.env.sleep(10)
    throttled = sim.simulator.injected["429"]
    assert throttled >= 3
    await own.rig.env.sleep(300)
    # Told to come back in 10 minutes: nobody asked again meanwhile.
    assert sim.simulator.injected["429"] == throttled
    await sim.client.put("/v1/faults", json={})
    await own.rig.env.sleep(310)
    for enrollment_id in ids:
        await settled(own.rig, enrollment_id, "active")

    counts = await sim.counts()
    assert (counts["total"], counts["people"], counts["max_per_person"]) == (3, 3, 1)
    assert sim.simulator.injected["429"] == throttled


class RefusesTermination:
    """BPJS registers as usual but refuses, for good, to end anyone's coverage (``refusals``
    times; then it ends it)."""

    def __init__(self, inner: BpjsAdapter, refusals: int = 1_000) -> None:
        self.inner = inner
        self.refusals = refusals
        self.ended: list[CoverageEnd] = []

    async def register(self, request: RegistrationRequest) -> RegistrationResult:
        return await self.inner.register(request)

    async def extend(self, request: ExtensionRequest) -> RegistrationResult:
        return await self.inner.extend(request)

    async def end(self, request: CoverageEnd) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            raise InvalidParticipant("participant is under audit (422)")
        self.ended.append(request)


def refusing(made: list[RefusesTermination], *, refusals: int) -> Callable[[Sim], BpjsAdapter]:
    def adapter_of(sim: Sim) -> BpjsAdapter:
        made.append(RefusesTermination(sim.adapter, refusals))
        return made[-1]

    return adapter_of


async def terminated_and_refused(own: Own) -> str:
    """An active enrollment terminated, BPJS refusing: taken, and left open for DPMD."""
    (enrollment_id,) = await enroll(own.rig, own.program, [someone()])
    effective = own.program.period_start + dt.timedelta(days=20)
    step = await send_step(
        own.rig.client,
        row_of(own.rig.engine, enrollment_id),
        EnrollmentWorkflow.terminate,
        Termination(OPERATOR, "moved", effective),
    )
    assert step.state == "terminated"

    async def flagged() -> Enrollment | None:
        row = row_of(own.rig.engine, enrollment_id)
        return row if row.attention else None

    row = await eventually(flagged, what="the refused termination flagged on the row")
    assert (row.state, row.coverage_end) == ("terminated", effective)
    assert row.attention == "BPJS refused the termination: participant is under audit (422)"
    assert trail(own.rig, enrollment_id)[-2:] == [
        ("terminated", OPERATOR.name, "village_operator", "active", "terminated", "moved"),
        (
            "bpjs_refused_termination",
            *SYSTEM,
            "terminated",
            "terminated",
            "participant is under audit (422)",
        ),
    ]
    # The workflow stays open: the exception is DPMD's to resolve, not forgotten.
    description = await own.rig.client.get_workflow_handle(enrollment_id).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    return enrollment_id


async def test_a_termination_bpjs_refuses_stays_open_until_dpmd_resolves_it(
    own_worker: OwnWorker,
) -> None:
    """Taken at once, BPJS refusing: the row says so until DPMD has BPJS told again."""
    adapter: list[RefusesTermination] = []
    own = await own_worker(refusing(adapter, refusals=1))
    enrollment_id = await terminated_and_refused(own)

    step = await send_step(
        own.rig.client,
        row_of(own.rig.engine, enrollment_id),
        EnrollmentWorkflow.resolve_exception,
        ExceptionResolution(VERIFIER, retry=True, note="BPJS cleared the audit"),
    )
    assert step.state == "terminated"
    assert await own.rig.client.get_workflow_handle(enrollment_id).result() == "terminated"
    row = row_of(own.rig.engine, enrollment_id)
    assert (row.state, row.attention) == ("terminated", None)
    assert [e[0] for e in trail(own.rig, enrollment_id)[-4:]] == [
        "terminated",
        "bpjs_refused_termination",
        "exception_retried",
        "coverage_ended_at_bpjs",
    ]
    assert trail(own.rig, enrollment_id)[-2][1:3] == (VERIFIER.name, VERIFIER.role)
    assert len(adapter[0].ended) == 1


async def test_an_exception_closed_by_hand_ends_the_workflow_and_needs_a_note(
    own_worker: OwnWorker,
) -> None:
    adapter: list[RefusesTermination] = []
    own = await own_worker(refusing(adapter, refusals=1_000))
    enrollment_id = await terminated_and_refused(own)
    row = row_of(own.rig.engine, enrollment_id)
    with pytest.raises(StepRefused, match="needs a note"):
        await send_step(
            own.rig.client,
            row,
            EnrollmentWorkflow.resolve_exception,
            ExceptionResolution(VERIFIER, retry=False, note=" "),
        )
    await send_step(
        own.rig.client,
        row,
        EnrollmentWorkflow.resolve_exception,
        ExceptionResolution(VERIFIER, retry=False, note="ended at the BPJS branch office"),
    )
    assert await own.rig.client.get_workflow_handle(enrollment_id).result() == "terminated"
    assert row_of(own.rig.engine, enrollment_id).attention is None
    assert trail(own.rig, enrollment_id)[-1] == (
        "exception_closed",
        VERIFIER.name,
        VERIFIER.role,
        "terminated",
        "terminated",
        "ended at the BPJS branch office",
    )
    assert adapter[0].ended == []

"""Building blocks for tests that run real workflows: a worker, a program, a nomination list."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.api.workflowservice.v1 import ListOpenWorkflowExecutionsRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.bpjs import (
    BpjsActivities,
    BpjsAdapter,
    BpjsAnswer,
    HttpBpjsAdapter,
    RecordTransitions,
)
from activities.projection import ProjectionActivities
from bpjs_sim.app import SimConfig, Simulator, create_app
from domain.nomination import WorkerRow
from models.tables import AuditEvent, BudgetEntry, Enrollment, FundingSource, Program
from rentan.nominations import NominationResult, nominate
from rentan.programs import FundingSourceSpec, ProgramSpec, create_program
from rentan.settings import Settings
from rentan.steps import approve_budget, send_step
from worker import ACTIVITY_SLOTS, build_worker
from workflows import timing
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import Actor, EnrollmentView, Verification

OPERATOR = Actor(name="op-embawang", role="village_operator", village_code="16.03.01.2011")
VERIFIER = Actor(name="dpmd-verifier", role="dpmd_verifier")
BUDGET_OFFICER = Actor(name="budget-officer", role="budget_officer")
VILLAGE = "16.03.01.2011"  # Embawang, a desa in Tanjung Agung
OTHER_VILLAGE = "16.03.01.2012"  # Pagar Dewa
KELURAHAN = "16.03.02.1006"  # Tungkal, a kelurahan in Muara Enim district


class AsgiBpjsTransport:
    """The adapter's transport to the simulator app in-process (httpx over ASGI), for tests that
    run many workflows. Production's aiohttp transport is tested against the simulator on a
    real port (tests/test_bpjs_sim.py) and in every test that runs the stack's processes."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def post(self, path: str, body: dict[str, object]) -> BpjsAnswer:
        response = await self._client.post(path, json=body)
        return BpjsAnswer(
            response.status_code, response.headers.get("retry-after"), response.content
        )

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass
class Sim:
    """The BPJS simulator app in-process, reached through the real HTTP adapter (ASGI)."""

    config: SimConfig
    adapter: HttpBpjsAdapter
    client: httpx.AsyncClient
    simulator: Simulator  # the app's state, for what the HTTP API does not show

    async def counts(self) -> dict[str, object]:
        response = await self.client.get("/v1/registrations/counts")
        data: dict[str, object] = response.json()
        return data


def make_sim(config: SimConfig | None = None) -> Sim:
    config = config or SimConfig()
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    adapter = HttpBpjsAdapter(
        "http://bpjs-sim",
        transport=AsgiBpjsTransport(
            httpx.AsyncClient(transport=transport, base_url="http://bpjs-sim")
        ),
    )
    client = httpx.AsyncClient(transport=transport, base_url="http://bpjs-sim")
    return Sim(config=config, adapter=adapter, client=client, simulator=app.state.sim)


@asynccontextmanager
async def running_worker(
    client: Client,
    settings: Settings,
    engine: Engine,
    sim: Sim,
    *,
    adapter: BpjsAdapter | None = None,
    record: RecordTransitions | None = None,
) -> AsyncIterator[None]:
    """A worker on the test's task queue; ``adapter`` replaces the sim's (e.g. to wrap it), and
    ``record`` the projection writer the registration activity records the activation with."""
    projection = ProjectionActivities(engine)
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        worker = build_worker(
            client,
            settings,
            projection=projection,
            bpjs=BpjsActivities(adapter or sim.adapter, record=record or projection.record),
            executor=executor,
            # Tests run workflows in the sandbox: it fails a test on a non-deterministic call.
            sandboxed=True,
        )
        async with worker:
            try:
                yield
            finally:
                await terminate_open_workflows(client, worker.task_queue)


async def terminate_open_workflows(client: Client, task_queue: str) -> int:
    """Terminate what a test left running on its task queue; how many.

    On the session's time-skipping server a timer firing for a workflow whose worker is gone
    schedules a workflow task nobody completes, and that stops time skipping for every later
    test. So nothing outlives the worker that ran it."""
    request = ListOpenWorkflowExecutionsRequest(namespace=client.namespace, maximum_page_size=500)
    executions = []
    while True:
        page = await client.workflow_service.list_open_workflow_executions(request)
        executions += [e.execution for e in page.executions]
        if not page.next_page_token:
            break
        request.next_page_token = page.next_page_token
    terminated = 0
    for execution in executions:
        handle = client.get_workflow_handle(execution.workflow_id, run_id=execution.run_id)
        try:
            description = await handle.describe()
            if description.raw_description.execution_config.task_queue.name != task_queue:
                continue
            await handle.terminate("the test is over")
        except RPCError:
            continue  # closed meanwhile
        terminated += 1
    return terminated


async def server_today(env: WorkflowEnvironment) -> dt.date:
    """Today (WIB) on the environment's clock: the session's time-skipping server runs ahead of
    the wall clock once a test has skipped time, so programs are dated from it."""
    return timing.local_date(await env.get_current_time())


def add_months(day: dt.date, months: int) -> dt.date:
    """The first of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def nik(day: int, month: int, year: int, serial: int, *, female: bool = False) -> str:
    """A valid Muara Enim NIK (Tanjung Agung) for the given birth date."""
    return f"160301{day + (40 if female else 0):02d}{month:02d}{year % 100:02d}{serial:04d}"


def worker_row(serial: int, **overrides: str) -> WorkerRow:
    fields = {
        "nik": nik(15, 5, 1985, serial),
        "full_name": f"Warga Uji {serial}",
        "birth_date": "1985-05-15",
        "gender": "L",
        "category": "perangkat_desa",
    }
    fields.update(overrides)
    return WorkerRow(**fields)


def make_program(
    engine: Engine,
    *,
    code: str = "ME-TEST",
    start: dt.date | None = None,
    months: int = 3,
    ceiling_idr: int = 10_000_000,
    successor: str | None = None,
    lead_days: int = 30,
    expiry_days: int | None = None,
) -> Program:
    start = start or dt.date.today().replace(day=1)
    end = start
    for _ in range(months):
        end = (end + dt.timedelta(days=32)).replace(day=1)
    end -= dt.timedelta(days=1)
    create_program(
        engine,
        ProgramSpec(
            code=code,
            name=f"Test program {code}",
            period_start=start,
            period_end=end,
            renewal_lead_days=lead_days,
            successor=successor,
            verification_expiry_days=expiry_days,
            funding_sources=[
                FundingSourceSpec(
                    code="APBD",
                    name="APBD Muara Enim",
                    ceiling_idr=ceiling_idr,
                    categories=[
                        "kepala_desa",
                        "perangkat_desa",
                        "bpd",
                        "non_perangkat",
                        "linmas",
                        "guru_ngaji",
                        "operator_desa",
                        "rt_rw",
                    ],
                ),
                FundingSourceSpec(
                    code="DBH_SAWIT",
                    name="DBH Sawit",
                    ceiling_idr=ceiling_idr,
                    categories=["petani_sawit"],
                ),
            ],
        ),
    )
    with Session(engine) as session:
        program = session.get(Program, code)
        assert program is not None
        return program


async def nominate_rows(
    client: Client,
    engine: Engine,
    settings: Settings,
    program: Program,
    rows: list[WorkerRow],
    *,
    village: str = VILLAGE,
    actor: Actor = OPERATOR,
    today: dt.date | None = None,
) -> NominationResult:
    return await nominate(
        client,
        engine,
        program=program,
        village_code=village,
        rows=list(enumerate(rows, start=1)),
        actor=actor,
        id_secret=settings.id_secret_bytes(),
        task_queue=settings.task_queue,
        today=today or dt.date.today(),
    )


# --- reading what a test produced ------------------------------------------------------------


def row_of(engine: Engine, enrollment_id: str) -> Enrollment:
    with Session(engine) as session:
        row = session.get(Enrollment, enrollment_id)
        assert row is not None, f"no enrollment row {enrollment_id}"
        return row


def audit_of(engine: Engine, enrollment_id: str) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditEvent)
                .where(AuditEvent.enrollment_id == enrollment_id)
                .order_by(col(AuditEvent.id))
            ).all()
        )


def ledger_of(engine: Engine, program_code: str) -> list[BudgetEntry]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(BudgetEntry)
                .where(BudgetEntry.program_code == program_code)
                .order_by(col(BudgetEntry.id))
            ).all()
        )


def source_of(engine: Engine, program_code: str, code: str = "APBD") -> FundingSource:
    with Session(engine) as session:
        return session.exec(
            select(FundingSource).where(
                FundingSource.program_code == program_code, FundingSource.code == code
            )
        ).one()


async def wait_for_state(
    env: WorkflowEnvironment, workflow_id: str, *states: str, tries: int = 120
) -> EnrollmentView:
    """Skip time a second at a time until the workflow's view shows one of ``states``."""
    handle = env.client.get_workflow_handle(workflow_id)
    for _ in range(tries):
        view: EnrollmentView = await handle.query(EnrollmentWorkflow.view)
        if view.state in states:
            return view
        await env.sleep(dt.timedelta(seconds=1))
    raise AssertionError(f"{workflow_id} stayed {view.state}, never became {states}")


async def enroll(
    env: WorkflowEnvironment,
    settings: Settings,
    engine: Engine,
    program: Program,
    row: WorkerRow,
    *,
    until: str = "active",
) -> str:
    """Nominate ``row`` (dated by the server's clock), verify it, approve its budget from APBD
    and wait until the workflow is ``until``; returns the enrollment id."""
    client = env.client
    result = await nominate_rows(
        client, engine, settings, program, [row], today=await server_today(env)
    )
    assert result.rejected == [], result.rejected
    (accepted,) = result.accepted
    await send_step(
        client,
        accepted.enrollment_id,
        EnrollmentWorkflow.verify,
        Verification(actor=VERIFIER, approve=True, reason="matches DPMD records"),
    )
    approval = await approve_budget(
        client,
        engine,
        program_code=program.code,
        funding_source="APBD",
        enrollment_ids=[accepted.enrollment_id],
        actor=BUDGET_OFFICER,
    )
    assert [o.ok for o in approval.outcomes] == [True], approval.outcomes
    await wait_for_state(env, accepted.enrollment_id, until)
    return accepted.enrollment_id

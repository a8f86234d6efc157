"""Building blocks for tests that run real workflows: a worker, a program, a list, the steps.

The steps go through the same services the API calls (``services.nominations``,
``services.steps``), so a test here exercises the batch workflows and the recorder too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.bpjs import BpjsAdapter, BpjsAnswer, HttpBpjsAdapter
from bpjs_sim.sim_config import SimConfig
from bpjs_sim.simulator import Simulator, create_app
from core.settings import Settings
from domain.records import Actor
from domain.worker_rows import WorkerRow
from models import ledger
from models.tables import AuditEvent, Commitment, Enrollment, FundingSource, Program
from services.nominations import NominationResult, bpjs_timing, nominate
from services.programs import FundingSourceSpec, ProgramSpec, create_program
from services.steps import BudgetApprovalResult, approve_budget, verify_many
from worker import ACTIVITY_SLOTS, build_worker
from workflows import timing
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import EnrollmentView, Outcome

T = TypeVar("T")

OPERATOR = Actor(name="op-embawang", role="village_operator", village_code="16.03.01.2011")
VERIFIER = Actor(name="dpmd-verifier", role="dpmd_verifier")
BUDGET_OFFICER = Actor(name="budget-officer", role="budget_officer")
VILLAGE = "16.03.01.2011"  # Embawang, a desa in Tanjung Agung
OTHER_VILLAGE = "16.03.01.2012"  # Pagar Dewa
KELURAHAN = "16.03.02.1006"  # Tungkal, a kelurahan in Muara Enim district
VILLAGE_CATEGORIES = [
    "kepala_desa",
    "perangkat_desa",
    "bpd",
    "non_perangkat",
    "linmas",
    "guru_ngaji",
    "operator_desa",
    "rt_rw",
]


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


@dataclass
class Rig:
    """What a session's workflow tests share: the server, the projection, the BPJS simulator and
    one worker on ``settings.task_queue``."""

    env: WorkflowEnvironment
    engine: Engine
    settings: Settings
    sim: Sim

    @property
    def client(self) -> Client:
        return self.env.client


@asynccontextmanager
async def running_worker(
    client: Client, settings: Settings, engine: Engine, adapter: BpjsAdapter
) -> AsyncIterator[None]:
    """A worker on ``settings.task_queue``, its workflows in the sandbox."""
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        worker = build_worker(
            client, settings, engine=engine, adapter=adapter, executor=executor, sandboxed=True
        )
        async with worker:
            yield


async def stop_program(rig: Rig, program_code: str) -> None:
    """Terminate what a program's enrollments left running. On the session's time-skipping
    server a timer that fires later for a finished test's workflow would still run it."""
    with Session(rig.engine) as session:
        ids = set(
            session.exec(
                select(Enrollment.workflow_id).where(Enrollment.program_code == program_code)
            )
        )
    for workflow_id in ids:
        try:
            await rig.client.get_workflow_handle(workflow_id).terminate("the test is over")
        except RPCError:
            continue  # closed already


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
    end = add_months(start, months) - dt.timedelta(days=1)
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
                FundingSourceSpec("APBD", "APBD Muara Enim", ceiling_idr, VILLAGE_CATEGORIES),
                FundingSourceSpec("DBH_SAWIT", "DBH Sawit", ceiling_idr, ["petani_sawit"]),
            ],
        ),
    )
    with Session(engine) as session:
        program = session.get(Program, code)
        assert program is not None
        return program


async def nominate_rows(
    rig: Rig,
    program: Program,
    rows: list[WorkerRow],
    *,
    village: str = VILLAGE,
    actor: Actor = OPERATOR,
) -> NominationResult:
    return await nominate(
        rig.client,
        program=program,
        village_code=village,
        rows=list(enumerate(rows, start=1)),
        actor=actor,
        id_secret=rig.settings.id_secret_bytes(),
        task_queue=rig.settings.task_queue,
        bpjs=bpjs_timing(rig.settings),
        today=await server_today(rig.env),
    )


async def verify(
    rig: Rig, ids: list[str], *, approve: bool = True, reason: str = "matches DPMD records"
) -> list[Outcome]:
    return await verify_many(
        rig.client,
        rig.engine,
        enrollment_ids=ids,
        actor=VERIFIER,
        approve=approve,
        reason=reason,
        task_queue=rig.settings.task_queue,
    )


async def fund(
    rig: Rig, program: Program, ids: list[str], *, source: str = "APBD"
) -> BudgetApprovalResult:
    return await approve_budget(
        rig.client,
        rig.engine,
        program_code=program.code,
        funding_source=source,
        enrollment_ids=ids,
        actor=BUDGET_OFFICER,
        task_queue=rig.settings.task_queue,
        reason="APBD allocation",
    )


async def enroll(
    rig: Rig, program: Program, rows: list[WorkerRow], *, until: str = "active"
) -> list[str]:
    """Nominate, verify and fund ``rows``, then wait until their workflows are ``until``."""
    result = await nominate_rows(rig, program, rows)
    assert result.rejected == [], result.rejected
    ids = [a.enrollment_id for a in result.accepted]
    assert all(o.ok for o in await verify(rig, ids))
    approval = await fund(rig, program, ids)
    assert all(o.ok for o in approval.outcomes), approval.outcomes
    for enrollment_id in ids:
        await wait_for_state(rig.env, enrollment_id, until)
    return ids


# --- reading what a test produced ------------------------------------------------------------


def row_of(engine: Engine, enrollment_id: str) -> Enrollment:
    with Session(engine) as session:
        row = session.get(Enrollment, enrollment_id)
        assert row is not None, f"no enrollment row {enrollment_id}"
        return row


def audit_of(engine: Engine, enrollment_id: str) -> list[AuditEvent]:
    """An enrollment's audit entries in the order its steps were taken."""
    with Session(engine) as session:
        rows = list(
            session.exec(select(AuditEvent).where(AuditEvent.enrollment_id == enrollment_id))
        )
    return sorted(rows, key=lambda a: (a.occurred_at, a.id or 0))


def actions_of(engine: Engine, enrollment_id: str) -> list[str]:
    return [a.action for a in audit_of(engine, enrollment_id)]


def commitments_of(engine: Engine, program_code: str) -> list[Commitment]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(Commitment)
                .where(Commitment.program_code == program_code)
                .order_by(col(Commitment.id))
            )
        )


def committed_of(engine: Engine, program_code: str, code: str = "APBD") -> int:
    """What a funding source has committed: the sum of its open commitments."""
    with Session(engine) as session:
        source = session.exec(
            select(FundingSource).where(
                FundingSource.program_code == program_code, FundingSource.code == code
            )
        ).one()
        assert source.id is not None
        return ledger.committed(session, [source.id])[source.id]


async def view_of(client: Client, workflow_id: str) -> EnrollmentView:
    view: EnrollmentView = await client.get_workflow_handle(workflow_id).query(
        EnrollmentWorkflow.view
    )
    return view


async def wait_for_state(
    env: WorkflowEnvironment, workflow_id: str, *states: str, tries: int = 120
) -> EnrollmentView:
    """Skip time a second at a time until the workflow's view shows one of ``states``."""
    for _ in range(tries):
        view = await view_of(env.client, workflow_id)
        if view.state in states:
            return view
        await env.sleep(dt.timedelta(seconds=1))
    raise AssertionError(f"{workflow_id} stayed {view.state}, never became {states}")


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, what: str, timeout_s: float = 30.0
) -> T:
    """Poll ``check`` until it returns something (not None); the one polling helper of the
    suite, for what another process or thread does in its own time."""
    deadline = time.monotonic() + timeout_s
    pause = 0.01
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)

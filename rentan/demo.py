"""``rentan demo``: a Muara Enim-shaped program and cohort through the whole lifecycle.

Creates (or reuses) a three-month program starting on the first day of the current month with
two funding sources (APBD for village workers, DBH Sawit for palm-oil farmers, with the seed's
ceilings), nominates a synthetic cohort village by village, verifies it and commits its budget
through the same code the API uses, waits with a progress bar until every enrollment has
settled, and prints the coverage report by district and by category.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client

from core.settings import Settings
from core.temporal import connect
from domain.categories import VILLAGE_WORKERS, Category
from domain.premium import period_premium
from domain.records import Actor
from domain.states import FINAL, State
from models.db import make_engine
from models.migrate import upgrade
from models.tables import Enrollment, Program
from rentan import cohort
from services.nominations import bpjs_timing, nominate
from services.programs import FundingSourceSpec, ProgramSpec, create_program
from services.reports import GroupBy, coverage_report
from services.steps import approve_budget, verify_many

DEMO_OPERATOR_ROLE = "village_operator"
VERIFIER = Actor(name="demo-dpmd-verifier", role="dpmd_verifier")
BUDGET_OFFICER = Actor(name="demo-budget-officer", role="budget_officer")
LISTS_AT_ONCE = 4


def period_for(start: dt.date, months: int = 3) -> tuple[dt.date, dt.date]:
    end = start
    for _ in range(months):
        end = (end + dt.timedelta(days=32)).replace(day=1)
    return start, end - dt.timedelta(days=1)


def ensure_program(engine: Engine, start: dt.date) -> Program:
    """The demo program for the period starting ``start``; created once, reused after."""
    period_start, period_end = period_for(start)
    code = f"ME-{period_start:%Y%m}"
    with Session(engine) as session:
        existing = session.get(Program, code)
        if existing is not None:
            return existing
    monthly = period_premium(1_000_000, period_start, period_end)
    create_program(
        engine,
        ProgramSpec(
            code=code,
            name=f"Muara Enim pekerja rentan {period_start:%b %Y} to {period_end:%b %Y}",
            period_start=period_start,
            period_end=period_end,
            max_age=60,
            renewal_lead_days=14,
            funding_sources=[
                FundingSourceSpec(
                    code="APBD",
                    name="APBD Kabupaten Muara Enim",
                    ceiling_idr=cohort.SEED_VILLAGE_WORKERS * monthly,
                    categories=sorted(c.value for c in VILLAGE_WORKERS),
                ),
                FundingSourceSpec(
                    code="DBH_SAWIT",
                    name="DBH Sawit",
                    ceiling_idr=cohort.SEED_FARMERS * monthly,
                    categories=[Category.PETANI_SAWIT.value],
                ),
            ],
        ),
    )
    with Session(engine) as session:
        program = session.get(Program, code)
        assert program is not None
        return program


async def run_demo(
    settings: Settings,
    *,
    size: int,
    period_start: dt.date | None = None,
    console: Console | None = None,
) -> bool:
    """Run the demo against a running stack; True when every enrollment ended active."""
    console = console or Console(stderr=False)
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    client = await connect(settings, identity="rentan-demo")
    try:
        start = period_start or dt.date.today().replace(day=1)
        program = ensure_program(engine, start)
        lists = cohort.generate(size, period_start=program.period_start, max_age=program.max_age)
        console.print(
            f"[bold]{program.name}[/] ({program.code}): {size:,} workers in {len(lists)} "
            f"village lists, {program.period_start} to {program.period_end}"
        )
        started = time.monotonic()
        with _progress(console) as progress:
            ids = await _nominate_all(client, engine, settings, program, lists, progress)
            await _verify_all(client, engine, settings, ids, progress)
            await _commit_all(client, engine, settings, program, progress)
            ok = await _await_settled(engine, program, len(ids), progress)
        console.print(f"done in {time.monotonic() - started:,.1f} s")
        _print_report(console, engine, program)
        return ok
    finally:
        engine.dispose()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


async def _nominate_all(
    client: Client,
    engine: Engine,
    settings: Settings,
    program: Program,
    lists: list[cohort.VillageList],
    progress: Progress,
) -> list[str]:
    total = sum(len(v.rows) for v in lists)
    task = progress.add_task("nominating (village lists)", total=total)
    limit = asyncio.Semaphore(LISTS_AT_ONCE)
    ids: list[str] = []
    rejected = 0

    async def one(item: cohort.VillageList) -> None:
        nonlocal rejected
        operator = Actor(
            name=f"operator-{item.village.code}",
            role=DEMO_OPERATOR_ROLE,
            village_code=item.village.code,
        )
        async with limit:
            result = await nominate(
                client,
                program=program,
                village_code=item.village.code,
                rows=list(enumerate(item.rows, start=1)),
                actor=operator,
                id_secret=settings.id_secret_bytes(),
                task_queue=settings.task_queue,
                bpjs=bpjs_timing(settings),
                today=dt.date.today(),
            )
        ids.extend(a.enrollment_id for a in result.accepted)
        rejected += len(result.rejected)
        progress.advance(task, len(item.rows))

    await asyncio.gather(*(one(item) for item in lists))
    if rejected:
        progress.console.print(f"[yellow]{rejected} rows rejected[/]")
    return ids


async def _verify_all(
    client: Client, engine: Engine, settings: Settings, ids: list[str], progress: Progress
) -> None:
    with Session(engine) as session:
        pending = list(
            session.exec(
                select(Enrollment.id).where(
                    col(Enrollment.id).in_(ids), Enrollment.state == State.NOMINATED.value
                )
            ).all()
        )
    task = progress.add_task("verifying (DPMD)", total=len(ids))
    progress.advance(task, len(ids) - len(pending))
    for start in range(0, len(pending), 200):
        batch = pending[start : start + 200]
        await verify_many(
            client,
            engine,
            enrollment_ids=batch,
            actor=VERIFIER,
            approve=True,
            reason="matches DPMD records (demo)",
            task_queue=settings.task_queue,
        )
        progress.advance(task, len(batch))


async def _commit_all(
    client: Client, engine: Engine, settings: Settings, program: Program, progress: Progress
) -> None:
    """Budget per village and funding source, as a budget officer approves lists."""
    with Session(engine) as session:
        rows = session.exec(
            select(Enrollment.id, Enrollment.village_code, Enrollment.category).where(
                Enrollment.program_code == program.code, Enrollment.state == State.VERIFIED.value
            )
        ).all()
    batches: dict[tuple[str, str], list[str]] = {}
    for enrollment_id, village_code, category in rows:
        source = "DBH_SAWIT" if category == Category.PETANI_SAWIT.value else "APBD"
        batches.setdefault((village_code, source), []).append(enrollment_id)
    task = progress.add_task("committing budget", total=len(rows))
    for (_village, source), ids in sorted(batches.items()):
        await approve_budget(
            client,
            engine,
            program_code=program.code,
            funding_source=source,
            enrollment_ids=ids,
            actor=BUDGET_OFFICER,
            task_queue=settings.task_queue,
            reason="demo budget approval",
        )
        progress.advance(task, len(ids))


async def _await_settled(
    engine: Engine, program: Program, expected: int, progress: Progress
) -> bool:
    """Wait until no enrollment is on its way (registration done); True when all are active."""
    task = progress.add_task("registering at BPJS", total=expected)
    settled_states = [s.value for s in FINAL | {State.ACTIVE, State.REGISTRATION_FAILED}]
    while True:
        with Session(engine) as session:
            settled = session.exec(
                select(func.count())
                .select_from(Enrollment)
                .where(
                    Enrollment.program_code == program.code,
                    col(Enrollment.state).in_(settled_states),
                )
            ).one()
            active = session.exec(
                select(func.count())
                .select_from(Enrollment)
                .where(Enrollment.program_code == program.code, Enrollment.state == "active")
            ).one()
        progress.update(task, completed=settled)
        if settled >= expected:
            return active == expected
        await asyncio.sleep(0.5)


def _print_report(console: Console, engine: Engine, program: Program) -> None:
    with Session(engine) as session:
        for group in (GroupBy.DISTRICT, GroupBy.CATEGORY):
            lines = coverage_report(session, program_code=program.code, group_by=group)
            table = Table(title=f"Coverage by {group.value} — {program.code}")
            table.add_column(group.value.capitalize())
            table.add_column("Enrollments", justify="right")
            table.add_column("Active", justify="right")
            table.add_column("Premium (Rp)", justify="right")
            for line in lines:
                table.add_row(
                    line.name, f"{line.enrollments:,}", f"{line.active:,}", f"{line.premium_idr:,}"
                )
            table.add_row(
                "[bold]Total[/]",
                f"[bold]{sum(x.enrollments for x in lines):,}[/]",
                f"[bold]{sum(x.active for x in lines):,}[/]",
                f"[bold]{sum(x.premium_idr for x in lines):,}[/]",
            )
            console.print(table)

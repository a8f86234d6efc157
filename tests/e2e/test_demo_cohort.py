"""The demo cohort on the real dev server: all active, the right premium, no NIK in Temporal."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.console import Console
from sqlalchemy import func
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from domain.premium import period_premium
from models.db import make_engine
from models.tables import Enrollment
from rentan import cohort
from rentan.demo import period_for, run_demo
from tests.conftest import test_settings
from tests.harness import eventually, make_sim, running_worker

SIZE = 60


async def test_demo_cohort_ends_active_with_premium_and_no_plain_nik_in_temporal(
    dev_server_env: WorkflowEnvironment, tmp_path: Path, db_url: str
) -> None:
    base = test_settings(tmp_path, db_url)
    target = dev_server_env.client.service_client.config.target_host
    settings = Settings(**{**base.model_dump(), "temporal_address": target})
    engine = make_engine(settings.resolved_database_url)
    start = dt.date.today().replace(day=1)
    console = Console(file=(tmp_path / "demo.out").open("w"), width=120)
    async with running_worker(dev_server_env.client, settings, engine, make_sim().adapter):
        ok = await run_demo(settings, size=SIZE, period_start=start, console=console)
    assert ok
    period_start, period_end = period_for(start)
    per_worker = period_premium(1_000_000, period_start, period_end)
    assert per_worker == 16_800 * 3
    with Session(engine) as session:
        active, premium, funded = session.exec(
            select(
                func.count(),
                func.sum(Enrollment.premium_idr),
                func.count(Enrollment.funding_source),
            ).where(Enrollment.state == "active")
        ).one()
    assert (active, premium, funded) == (SIZE, SIZE * per_worker, SIZE)
    # Temporal's own list finds every enrollment by its program (search attributes set at start).
    program_code = f"ME-{start:%Y%m}"
    query = f"RentanProgram='{program_code}'"

    async def listed() -> int | None:
        counted = (await dev_server_env.client.count_workflows(query)).count
        return counted if counted >= SIZE else None

    await eventually(listed, what="Temporal lists every enrollment by its program")
    report = (tmp_path / "demo.out").read_text()
    assert f"{SIZE * per_worker:,}" in report

    # Invariant 6: the dev server's database never saw a NIK, a name or a birth date in plain text.
    people = [r for v in cohort.generate(SIZE, period_start=period_start) for r in v.rows]
    temporal_bytes = b"".join(
        p.read_bytes()
        for p in Path(dev_server_env.temporal_db_file).parent.iterdir()  # type: ignore[attr-defined]
        if p.name.startswith("temporal.db")
    )
    assert len(temporal_bytes) > 100_000
    leaked = [
        r.nik
        for r in people
        if (r.nik or "").encode() in temporal_bytes
        or (r.full_name or "").encode() in temporal_bytes
    ]
    assert leaked == []
    engine.dispose()

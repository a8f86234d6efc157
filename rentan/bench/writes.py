"""The projection's writes alone: CPU per enrollment of the worker's four records.

``python -m rentan.bench.writes --prefill 2000 --enrollments 1000 --concurrency 2 --repeats 3``
fills a SQLite projection with ``--prefill`` enrollments through the worker's own writes, then,
``--repeats`` times on a fresh copy of it, writes ``--enrollments`` more as the worker does for
each (the nomination; the verification; budget approval with the start of registration; the
activation with its KPJ) with ``--concurrency`` enrollments in flight, and prints the process's
CPU per enrollment: the writer thread and the event loop that hands it the writes. In the bench
most of the writer's transactions carry a single write, so ``--concurrency 2`` is the realistic
case; larger values show what group commit saves when writes queue.

No Temporal and no other process: it isolates the cost the full bench can only show through
its noise (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path

from sqlmodel import Session

from activities.projection import ProjectionActivities, enrollment_id_for, program_terms
from models.db import make_engine
from models.migrate import upgrade
from models.tables import Program
from rentan.programs import FundingSourceSpec, ProgramSpec, create_program
from workflows.messages import (
    SYSTEM,
    Actor,
    EnrollmentChanges,
    EnrollmentInput,
    NominationRecord,
    PersonData,
    ProgramTerms,
    Transition,
)

PROGRAM = "WRITES"
VILLAGE = "16.03.01.2011"  # Embawang, a desa in Tanjung Agung
OPERATOR = Actor(name="op-embawang", role="village_operator", village_code=VILLAGE)
VERIFIER = Actor(name="dpmd-verifier", role="dpmd_verifier")
OFFICER = Actor(name="budget-officer", role="budget_officer")
START = dt.date(2026, 10, 1)
AT = dt.datetime(2026, 10, 1, 9, 0, tzinfo=dt.UTC)


def _nomination(terms: ProgramTerms, n: int) -> NominationRecord:
    person_key = f"{n:064x}"  # an HMAC's length
    enrollment_id = enrollment_id_for(person_key, terms.code)
    return NominationRecord(
        input=EnrollmentInput(
            enrollment_id=enrollment_id,
            program=terms,
            person=PersonData(
                nik=f"16030115058{n % 100_000:05d}",
                full_name=f"Pekerja Rentan {n}",
                birth_date=dt.date(1985, 5, 15),
                gender="F",
                phone="081234567890",
            ),
            person_key=person_key,
            village_code=VILLAGE,
            district_code="16.03.01",
            category="guru_ngaji",
            declared_income_idr=1_000_000,
            premium_idr=50_400,
            nominated_by=OPERATOR,
        ),
        workflow_id=enrollment_id,
        run_id=f"run-{n:032x}",
        occurred_at=AT,
    )


def _step(
    record: NominationRecord,
    seq: int,
    action: str,
    states: tuple[str, str],
    actor: Actor = SYSTEM,
    changes: EnrollmentChanges | None = None,
) -> Transition:
    human = actor is not SYSTEM
    return Transition(
        enrollment_id=record.input.enrollment_id,
        workflow_id=record.workflow_id,
        run_id=record.run_id,
        seq=seq,
        action=action,
        actor=actor,
        state_before=states[0],
        state_after=states[1],
        occurred_at=AT + dt.timedelta(minutes=seq),
        reason="sesuai data desa" if human else "",
        human=human,
        changes=changes,
    )


async def _lifecycle(projection: ProjectionActivities, terms: ProgramTerms, n: int) -> None:
    """The four records of one enrollment, as the worker writes them."""
    record = _nomination(terms, n)
    await projection.record_nomination(record)
    await projection.record([_step(record, 2, "verified", ("nominated", "verified"), VERIFIER)])
    await projection.record(
        [
            _step(
                record,
                3,
                "budget_approved",
                ("verified", "budget_approved"),
                OFFICER,
                EnrollmentChanges(funding_source="APBD"),
            ),
            _step(record, 4, "registration_started", ("budget_approved", "registering")),
        ]
    )
    coverage = EnrollmentChanges(
        kpj_number=f"KPJ{n:09d}", coverage_start=START, coverage_end=dt.date(2026, 12, 31)
    )
    await projection.record(
        [_step(record, 5, "activated", ("registering", "active"), changes=coverage)]
    )


async def _write(
    projection: ProjectionActivities, terms: ProgramTerms, first: int, count: int, in_flight: int
) -> None:
    gate = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        async with gate:
            await _lifecycle(projection, terms, n)

    await asyncio.gather(*(one(n) for n in range(first, first + count)))


def _terms(url: str) -> ProgramTerms:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            program = session.get(Program, PROGRAM)
            assert program is not None
            return program_terms(program)
    finally:
        engine.dispose()


def prefill(path: Path, count: int) -> None:
    """A migrated projection at ``path`` holding ``count`` active enrollments."""
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    create_program(
        engine,
        ProgramSpec(
            code=PROGRAM,
            name="Writes benchmark",
            period_start=START,
            period_end=dt.date(2026, 12, 31),
            funding_sources=[
                FundingSourceSpec(
                    code="APBD", name="APBD", ceiling_idr=10**15, categories=["guru_ngaji"]
                )
            ],
        ),
    )
    asyncio.run(_write(ProjectionActivities(engine), _terms(url), 0, count, in_flight=400))
    engine.dispose()


def measure(filled: Path, first: int, count: int, in_flight: int) -> float:
    """CPU ms per enrollment of ``count`` more, written on a fresh copy of ``filled``."""
    path = filled.with_name(f"run-{time.monotonic_ns()}.db")
    # SQLite's own copy: the filled database's last writes may still be in its WAL.
    with closing(sqlite3.connect(filled)) as source, closing(sqlite3.connect(path)) as copy:
        source.backup(copy)
    url = f"sqlite:///{path}"
    terms = _terms(url)
    engine = make_engine(url)
    try:
        started = time.process_time()
        asyncio.run(_write(ProjectionActivities(engine), terms, first, count, in_flight))
        return 1000 * (time.process_time() - started) / count
    finally:
        engine.dispose()


def run(prefilled: int, enrollments: int, in_flight: int, repeats: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="rentan-writes-") as tmp:
        filled = Path(tmp) / "projection.db"
        prefill(filled, prefilled)
        runs = [
            measure(filled, prefilled + r * enrollments, enrollments, in_flight)
            for r in range(repeats)
        ]
    return {
        "prefilled": prefilled,
        "enrollments": enrollments,
        "concurrency": in_flight,
        "cpu_ms_per_enrollment": [round(ms, 3) for ms in runs],
        "median_cpu_ms_per_enrollment": round(statistics.median(runs), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefill", type=int, default=2000)
    parser.add_argument("--enrollments", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.prefill, args.enrollments, args.concurrency, args.repeats)))


if __name__ == "__main__":
    main()

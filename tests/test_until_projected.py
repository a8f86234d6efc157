"""Budget approval's read-your-writes wait (``rentan.steps.until_projected``) on its own."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from structlog.testing import capture_logs

import rentan.steps
from models.tables import Enrollment, Person
from rentan.steps import until_projected
from tests.harness import make_program


def _row(engine: Engine, enrollment_id: str, seq: int) -> None:
    program = make_program(engine)
    with Session(engine) as session:
        session.add(
            Person(
                person_key=enrollment_id,
                nik_masked="1603**********01",
                full_name="Siti",
                birth_date=dt.date(1990, 1, 1),
                gender="P",
            )
        )
        session.flush()
        session.add(
            Enrollment(
                id=enrollment_id,
                program_code=program.code,
                person_key=enrollment_id,
                village_code="16.03.01.2011",
                district_code="16.03.01",
                category="linmas",
                full_name="Siti",
                nik_masked="1603**********01",
                state="verified",
                declared_income_idr=0,
                premium_idr=50_400,
                workflow_id=enrollment_id,
                seq=seq,
                nominated_by="op",
            )
        )
        session.commit()


async def test_answers_once_the_row_reaches_the_seq(engine: Engine) -> None:
    _row(engine, "enr_caught_up", 2)

    async def writer_catches_up() -> None:
        await asyncio.sleep(0.1)
        with Session(engine) as session:
            row = session.get(Enrollment, "enr_caught_up")
            assert row is not None
            row.seq, row.state = 4, "registering"
            session.add(row)
            session.commit()

    started = time.monotonic()
    catching_up = asyncio.create_task(writer_catches_up())
    await until_projected(engine, {"enr_caught_up": 4})
    waited = time.monotonic() - started
    await catching_up
    assert 0.1 <= waited < 2.0


async def test_gives_up_with_a_warning_when_the_projection_stays_behind(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _row(engine, "enr_behind", 2)
    monkeypatch.setattr(rentan.steps, "PROJECTION_WAIT_S", 0.2)
    started = time.monotonic()
    with capture_logs() as logs:
        await until_projected(engine, {"enr_behind": 4})
    assert 0.2 <= time.monotonic() - started < 2.0
    (warning,) = [e for e in logs if e["event"] == "projection behind the workflows"]
    assert (warning["enrollments"], warning["example"]) == (1, "enr_behind")

"""The one recording path: records land in any order, any number of times, and the projection
ends the same: the row shows the newest snapshot (by run start, then seq) and the audit log
holds each record once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from core.sealing import Sealer
from domain.records import Actor, Record, Snapshot
from models.audit_chain import verify_chain
from models.db import make_engine, session_scope
from models.recorder import write_records
from models.tables import AuditEvent, Enrollment
from tests.harness import VILLAGE, make_program

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
OPERATOR = Actor("op", "village_operator", VILLAGE)
SEALER = Sealer(key_id="k1", keys={"k1": bytes(range(32))})


@pytest.fixture
def engine(any_db_url: str) -> Iterator[Engine]:
    engine = make_engine(any_db_url)
    make_program(engine, code="REC", start=dt.date(2026, 1, 1))
    yield engine
    engine.dispose()


def record(seq: int, state: str, *, run: str = "run-1", started: dt.datetime = T0) -> Record:
    snapshot = Snapshot(
        enrollment_id="enr_rec",
        program_code="REC",
        workflow_id="enr_rec",
        run_id=run,
        run_started_at=started,
        seq=seq,
        state=state,
        person_key="pk",
        nik_masked="160301********01",
        full_name="Warga Uji",
        birth_date=dt.date(1985, 5, 15),
        gender="L",
        phone=None,
        village_code=VILLAGE,
        district_code=VILLAGE[:8],
        category="perangkat_desa",
        declared_income_idr=1_000_000,
        premium_idr=50_400,
        funding_source="APBD" if state in ("registering", "active") else None,
        kpj_number="11000000001" if state == "active" else None,
        coverage_start=None,
        coverage_end=None,
        nominated_by="op",
        nominated_at=started,
        updated_at=started + dt.timedelta(minutes=seq),
    )
    return Record(snapshot, f"step-{state}", OPERATOR, None, f"seq {seq}")


def write(engine: Engine, records: list[Record]) -> None:
    with session_scope(engine) as session:
        write_records(session, records, SEALER)


def row(engine: Engine) -> Enrollment:
    with Session(engine) as session:
        found = session.get(Enrollment, "enr_rec")
        assert found is not None
        return found


def audit_keys(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.exec(select(AuditEvent.event_key)))


LIFE = [
    record(1, "nominated"),
    record(2, "verified"),
    record(3, "budget_approved"),
    record(4, "registering"),
    record(5, "active"),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(5)))[::17])
def test_records_in_any_order_leave_the_newest_snapshot(
    engine: Engine, order: tuple[int, ...]
) -> None:
    for index in order:
        write(engine, [LIFE[index]])
    shown = row(engine)
    assert (shown.state, shown.seq, shown.kpj_number) == ("active", 5, "11000000001")
    assert audit_keys(engine) == sorted(r.key for r in LIFE)
    with Session(engine) as session:
        assert verify_chain(session).ok


def test_writing_the_same_records_again_changes_nothing(engine: Engine) -> None:
    write(engine, LIFE)
    before = (row(engine), audit_keys(engine))
    write(engine, list(reversed(LIFE)) + LIFE[:2])
    after = (row(engine), audit_keys(engine))
    assert before[0].model_dump() == after[0].model_dump()
    assert before[1] == after[1]


def test_a_later_run_wins_over_a_longer_earlier_one(engine: Engine) -> None:
    rejected = [record(1, "nominated"), record(2, "rejected")]
    again = record(1, "nominated", run="run-2", started=T0 + dt.timedelta(days=3))
    # The new run's nomination lands before the old run's rejection (a slow batch).
    write(engine, [rejected[0], again, rejected[1]])
    shown = row(engine)
    assert (shown.run_id, shown.seq, shown.state) == ("run-2", 1, "nominated")
    # Every record kept, none collides: each key names its run.
    assert audit_keys(engine) == sorted(r.key for r in [*rejected, again])


def test_a_record_carries_the_whole_row(engine: Engine) -> None:
    write(engine, [LIFE[0]])
    corrected = dataclasses.replace(
        LIFE[1], snapshot=dataclasses.replace(LIFE[1].snapshot, full_name="Warga Benar")
    )
    write(engine, [corrected])
    shown = row(engine)
    birth = SEALER.open(shown.birth_date_sealed, row=shown.id)
    assert (shown.full_name, birth, shown.gender) == ("Warga Benar", "1985-05-15", "L")

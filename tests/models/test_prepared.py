"""Prepared statements write what ``Connection.execute`` writes, on both databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from models.audit_chain import _LOG
from models.db import insert_new, make_engine
from models.prepared import Prepared
from models.recorder import _UPSERT_ROW, _upsert
from models.tables import ApiKey, Enrollment, Program, table

# Not UTC on purpose: both paths must convert it the same way.
AT = dt.datetime(2026, 11, 27, 20, 30, 1, 123456, tzinfo=dt.timezone(dt.timedelta(hours=7)))


@pytest.fixture
def engine(any_db_url: str) -> Iterator[Engine]:
    """Each test on SQLite and on PostgreSQL: what the drivers receive differs."""
    engine = make_engine(any_db_url)
    yield engine
    engine.dispose()


def audit_row(event_key: str) -> dict[str, object]:
    return {
        "event_key": event_key,
        "occurred_at": AT,
        "actor": "dpmd-verifier",
        "actor_id": "key:1",
        "role": "dpmd_verifier",
        "action": "verified",
        "enrollment_id": None,
        "workflow_id": "wf",
        "run_id": "run",
        "state_before": "nominated",
        "state_after": "verified",
        "reason": "",
        "detail": "{}",
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
    }


def test_a_prepared_insert_stores_what_sqlalchemy_stores(engine: Engine) -> None:
    statement = insert_new(_LOG, key="event_key", dialect=engine.dialect.name)
    prepared = Prepared(statement.returning(_LOG.c.id))
    with engine.begin() as sql:
        sql.execute(statement, audit_row("by-sqlalchemy"))
        added = prepared.first(sql, audit_row("prepared"))
        again = prepared.first(sql, audit_row("prepared"))  # ON CONFLICT DO NOTHING
    assert added is not None and isinstance(added[0], int)
    assert again is None
    with engine.connect() as sql:
        # The stored values as the database holds them, not as the ORM reads them back.
        rows = sql.execute(
            text("SELECT event_key, occurred_at, actor, state_after FROM audit_event ORDER BY id")
        ).all()
    assert [row[0] for row in rows] == ["by-sqlalchemy", "prepared"]
    assert rows[0][1:] == rows[1][1:]


def test_run_counts_the_rows_a_statement_changed(engine: Engine) -> None:
    statement = insert_new(_LOG, key="event_key", dialect=engine.dialect.name)
    prepared = Prepared(statement)
    with engine.begin() as sql:
        assert prepared.run(sql, audit_row("once")) == 1
        assert prepared.run(sql, audit_row("once")) == 0


def enrollment_row(enrollment_id: str, *, seq: int, state: str) -> dict[str, object]:
    return {
        "id": enrollment_id,
        "program_code": "PREPARED",
        "workflow_id": enrollment_id,
        "run_id": "run-1",
        "run_started_at": AT,
        "seq": seq,
        "state": state,
        "person_key": "pk-prepared",
        "nik_masked": "160301********01",
        "full_name": "Siti Aminah",
        "birth_date_sealed": "k1:c2VhbGVk",
        "gender": "P",
        "phone": None,
        "village_code": "16.03.01.2011",
        "district_code": "16.03.01",
        "category": "guru_ngaji",
        "declared_income_idr": 1_000_000,
        "premium_idr": 50_400,
        "funding_source": None,
        "kpj_number": None,
        "coverage_start": dt.date(2026, 10, 1),
        "coverage_end": None,
        "nominated_by": "op",
        "nominated_at": AT,
        "updated_at": AT + dt.timedelta(seconds=seq),
        "attention": None,
    }


def add_program(sql: Connection) -> None:
    sql.execute(
        insert(table(Program)),
        {
            "code": "PREPARED",
            "name": "prepared",
            "period_start": dt.date(2026, 10, 1),
            "period_end": dt.date(2026, 12, 31),
        },
    )


def test_the_prepared_row_upsert_stores_what_sqlalchemy_stores(engine: Engine) -> None:
    """The recorder's upsert of an enrollment row, prepared and not: the same stored values,
    and only a newer snapshot replaces the row's."""
    rows = table(Enrollment)
    with engine.begin() as sql:
        add_program(sql)
        sql.execute(_upsert(engine.dialect.name), enrollment_row("enr_a", seq=1, state="nominated"))
        assert _UPSERT_ROW.run(sql, enrollment_row("enr_b", seq=1, state="nominated")) == 1
        _UPSERT_ROW.run(sql, enrollment_row("enr_b", seq=3, state="budget_approved"))
        _UPSERT_ROW.run(sql, enrollment_row("enr_b", seq=2, state="verified"))  # older: kept out
    with engine.connect() as sql:
        stored = sql.execute(
            text(
                "SELECT run_started_at, coverage_start, nominated_at, phone FROM enrollment"
                " WHERE id IN ('enr_a', 'enr_b') ORDER BY id"
            )
        ).all()
        newest = sql.execute(select(rows.c.seq, rows.c.state).where(rows.c.id == "enr_b")).one()
    assert stored[0] == stored[1]
    assert tuple(newest) == (3, "budget_approved")


def test_a_literal_in_the_statement_is_sent_with_it(engine: Engine) -> None:
    """``nullif(:phone, '')``: the '' is the statement's own parameter, sent with the values."""
    rows = table(Enrollment)
    keep_phone = Prepared(
        update(rows)
        .where(rows.c.id == bindparam("enrollment_id"))
        .values(phone=func.coalesce(func.nullif(bindparam("new_phone"), ""), rows.c.phone))
    )
    with engine.begin() as sql:
        add_program(sql)
        _UPSERT_ROW.run(sql, {**enrollment_row("enr_c", seq=1, state="nominated"), "phone": "0812"})
        assert keep_phone.run(sql, {"enrollment_id": "enr_c", "new_phone": ""}) == 1
        kept = sql.execute(select(rows.c.phone).where(rows.c.id == "enr_c")).scalar_one()
        keep_phone.run(sql, {"enrollment_id": "enr_c", "new_phone": "0813"})
        changed = sql.execute(select(rows.c.phone).where(rows.c.id == "enr_c")).scalar_one()
    assert (kept, changed) == ("0812", "0813")


def test_a_default_computed_at_execution_is_refused(engine: Engine) -> None:
    """SQLAlchemy fills column defaults in its execution context, which a prepared statement
    skips: leaving one out must fail loudly, not store NULL."""
    prepared = Prepared(insert(table(ApiKey)))
    with engine.begin() as sql, pytest.raises(ValueError, match="give created_at a value"):
        prepared.run(sql, {"name": "k", "role": "auditor", "key_hash": "h", "prefix": "p"})


def test_a_refused_write_raises_what_sqlalchemy_raises(engine: Engine) -> None:
    """Callers catch SQLAlchemy's errors (a nomination losing the race for its row), not the
    driver's."""
    prepared = Prepared(insert(_LOG))  # no ON CONFLICT: the second insert breaks the unique key
    with engine.begin() as sql:
        prepared.run(sql, audit_row("twice"))
        with pytest.raises(IntegrityError):
            prepared.run(sql, audit_row("twice"))


def test_a_lost_connection_is_reported_as_such(postgres_url: str) -> None:
    """The group-commit writer runs a batch again on a fresh connection only when the error
    says the old one was invalidated."""
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as sql:
            pid = sql.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(DBAPIError) as raised:
                Prepared(insert_new(_LOG, key="event_key", dialect="postgresql")).run(
                    sql, audit_row("after the kill")
                )
            assert raised.value.connection_invalidated
            assert sql.invalidated
    finally:
        engine.dispose()

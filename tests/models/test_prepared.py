"""Prepared statements write what ``Connection.execute`` writes, on both databases."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from models.audit_chain import _LOG
from activities.recording import _UPSERT_PERSON
from models.db import insert_new, make_engine
from models.prepared import Prepared
from models.tables import Enrollment, Person, table

# Not UTC on purpose: both paths must convert it the same way.
AT = dt.datetime(2026, 11, 27, 20, 30, 1, 123456, tzinfo=dt.timezone(dt.timedelta(hours=7)))


def audit_row(event_key: str) -> dict[str, object]:
    return {
        "event_key": event_key,
        "occurred_at": AT,
        "actor": "dpmd-verifier",
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


def test_a_literal_in_the_statement_is_sent_with_it(engine: Engine) -> None:
    """The person upsert's ``nullif(phone, '')``: the '' is the statement's own parameter."""
    person = {
        "person_key": "pk-prepared",
        "nik_masked": "1603********0001",
        "full_name": "Siti Aminah",
        "birth_date": dt.date(1985, 5, 15),
        "gender": "F",
        "phone": "081234567890",
    }
    with engine.begin() as sql:
        _UPSERT_PERSON.run(sql, person)
        _UPSERT_PERSON.run(sql, {**person, "full_name": "Siti Aminah S", "phone": ""})
    with engine.connect() as sql:
        row = sql.execute(
            select(table(Person).c.full_name, table(Person).c.phone, table(Person).c.birth_date)
        ).one()
    assert (row.full_name, row.phone, row.birth_date) == (
        "Siti Aminah S",
        "081234567890",
        dt.date(1985, 5, 15),
    )


def test_a_default_computed_at_execution_is_refused(engine: Engine) -> None:
    """SQLAlchemy fills column defaults in its execution context, which a prepared statement
    skips: leaving one out must fail loudly, not store NULL."""
    prepared = Prepared(insert(table(Enrollment)))
    with engine.begin() as sql, pytest.raises(ValueError, match="seq, nominated_at, updated_at"):
        prepared.run(sql, {"id": "enr_x", "program_code": "ME"})


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

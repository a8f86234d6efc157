"""Migrations on SQLite and PostgreSQL: the squashed schema (0201) and regions (0202), every
table, idempotence, and a schema equal to the models'."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

import models.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from models.db import make_engine
from models.migrate import alembic_config, upgrade
from models.tables import Village
from tests.conftest import POSTGRES_URL, require_postgres

DISTRICTS = 22
VILLAGES = 256
KELURAHAN = 10
REVISIONS = ["0201", "0202"]  # the schema of 0.2, then the regions


@pytest.fixture
def engine(any_db_url: str) -> Iterator[Engine]:
    """A database migrated to head, on SQLite and on PostgreSQL."""
    engine = make_engine(any_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nothing has touched yet, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    require_postgres()
    name = f"rentan_fresh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        return (
            connection.execute(text("SELECT count(*) FROM district")).scalar_one(),
            connection.execute(text("SELECT count(*) FROM village")).scalar_one(),
            connection.execute(
                text("SELECT count(*) FROM village WHERE is_kelurahan")
            ).scalar_one(),
        )


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _drift(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), SQLModel.metadata))


def test_migrations_are_the_squashed_schema_then_the_regions() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    history = [script.revision for script in scripts.walk_revisions()]
    assert list(reversed(history)) == REVISIONS
    assert scripts.get_revision("0201").down_revision is None
    assert scripts.get_current_head() == "0202"


def test_upgrade_creates_all_tables(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    expected = set(SQLModel.metadata.tables)
    assert expected, "models.tables registered no tables"
    assert tables - {"alembic_version"} == expected
    # What 0.1 had and 0.2 dropped is gone.
    assert not {"person", "decision", "budget_ledger"} & tables


def test_upgrade_loads_regions(engine: Engine) -> None:
    assert _counts(engine) == (DISTRICTS, VILLAGES, KELURAHAN)
    with engine.connect() as connection:
        # Every village belongs to a loaded district of Muara Enim (16.03).
        orphans = connection.execute(
            text(
                "SELECT count(*) FROM village"
                " WHERE district_code NOT IN (SELECT code FROM district)"
            )
        ).scalar_one()
        codes = connection.execute(text("SELECT code FROM district")).scalars().all()
    assert orphans == 0
    assert all(code.startswith("16.03.") for code in codes)


def test_upgrade_at_head(engine: Engine) -> None:
    assert _revision(engine) == REVISIONS[-1]


def test_upgrade_twice_noop(engine: Engine, any_db_url: str) -> None:
    before_tables = sorted(inspect(engine).get_table_names())
    before_revision = _revision(engine)
    engine.dispose()

    upgrade(any_db_url)
    upgrade(any_db_url)

    assert _counts(engine) == (DISTRICTS, VILLAGES, KELURAHAN)  # regions not loaded again
    assert sorted(inspect(engine).get_table_names()) == before_tables
    assert _revision(engine) == before_revision


def test_upgrade_empty_database_step_by_step_to_the_models_schema(empty_db_url: str) -> None:
    upgrade(empty_db_url, "0201")
    engine = make_engine(empty_db_url)
    try:
        assert _revision(engine) == "0201"
        assert _counts(engine) == (0, 0, 0)  # the schema alone
        upgrade(empty_db_url)
        upgrade(empty_db_url)
        assert _revision(engine) == "0202"
        assert _counts(engine) == (DISTRICTS, VILLAGES, KELURAHAN)
        assert _drift(engine) == []
    finally:
        engine.dispose()


def test_upgrade_no_drift_from_models(engine: Engine) -> None:
    diff = _drift(engine)
    assert diff == [], f"models and migrations disagree; add a migration: {diff}"


def test_insert_foreign_key_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), Session(engine) as session:
        session.add(Village(code="16.03.99.2001", name="Nowhere", district_code="16.03.99"))
        session.commit()


def test_make_engine_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'pragmas.db'}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert (tmp_path / "sub" / "pragmas.db").exists()  # the parent directory was created
    finally:
        engine.dispose()


def test_make_engine_pragmas_every_connection(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        assert engine.dialect.driver == "psycopg"  # plain postgresql:// gets psycopg 3
        return
    # Raw DBAPI connections: the pragmas come from the connect hook, not from a transaction.
    connections = [engine.raw_connection() for _ in range(3)]
    try:
        for connection in connections:
            cursor = connection.cursor()
            assert cursor.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert cursor.execute("PRAGMA foreign_keys").fetchone() == (1,)
            cursor.close()
    finally:
        for connection in connections:
            connection.close()

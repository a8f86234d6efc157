"""Migrations on SQLite and PostgreSQL: every table, the regions, idempotence, no drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

import models.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from models.db import make_engine
from models.migrate import alembic_config, upgrade
from models.tables import Village

DISTRICTS = 22
VILLAGES = 256
KELURAHAN = 10


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


def test_upgrade_creates_all_tables(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    expected = set(SQLModel.metadata.tables)
    assert expected, "models.tables registered no tables"
    assert expected <= tables
    assert tables - expected == {"alembic_version"}


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


def test_upgrade_at_head(engine: Engine, db_url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert head is not None
    assert _revision(engine) == head


def test_upgrade_twice_noop(engine: Engine, db_url: str) -> None:
    before_tables = sorted(inspect(engine).get_table_names())
    before_revision = _revision(engine)
    engine.dispose()

    upgrade(db_url)
    upgrade(db_url)

    assert _counts(engine) == (DISTRICTS, VILLAGES, KELURAHAN)  # regions not loaded again
    assert sorted(inspect(engine).get_table_names()) == before_tables
    assert _revision(engine) == before_revision


def test_upgrade_fresh_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    upgrade(url)
    engine = make_engine(url)
    try:
        assert _counts(engine) == (DISTRICTS, VILLAGES, KELURAHAN)
    finally:
        engine.dispose()


def test_upgrade_no_drift_from_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
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

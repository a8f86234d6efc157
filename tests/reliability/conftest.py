"""Fixtures of the reliability suite: stacks of real processes, a PostgreSQL database, figures.

Every scenario starts its own stack (``tests/reliability/stack.py``) and the fixture stops every
process it started, by pid, whatever the test's outcome. Each scenario records its figures with
``record``: printed (``pytest -s`` shows them) and merged into ``last_run.json`` beside this file,
which RELIABILITY.md quotes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.reliability.stack import Stack

FIGURES_FILE = Path(__file__).with_name("last_run.json")
POSTGRES_URL = os.environ.get(
    "RENTAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"

Record = Callable[[str, dict[str, Any]], None]
StackFactory = Callable[..., Stack]


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[StackFactory]:
    """Start stacks for this test; every process of each is stopped at teardown."""
    stacks: list[Stack] = []

    def make(name: str = "stack", **options: Any) -> Stack:
        stack = Stack(tmp_path / name, **options)
        stacks.append(stack)
        stack.start()
        return stack

    yield make
    for stack in stacks:
        codes = stack.close()
        print(f"\n[reliability] stopped {codes}; logs in {stack.logs}", flush=True)
        still = [p.name for p in stack.processes if p.alive]
        assert not still, f"processes still running after close: {still}"


def _postgres_reason() -> str | None:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}".strip()
    return None


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database ``rentan_rel_<uuid>``, dropped afterwards."""
    reason = _postgres_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    name = f"rentan_rel_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": " ".join(["python -m pytest", *sys.argv[1:]]),
    }


@pytest.fixture
def record() -> Record:
    """``record(scenario, figures)``: print the figures and keep them in last_run.json."""

    def write(scenario: str, figures: dict[str, Any]) -> None:
        entry = {**figures, "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        print(f"\n[reliability] {scenario}: {json.dumps(entry, sort_keys=True)}", flush=True)
        try:
            data = json.loads(FIGURES_FILE.read_text())
        except (OSError, ValueError):
            data = {}
        data["_machine"] = _machine()
        data[scenario] = entry
        tmp = FIGURES_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(FIGURES_FILE)

    return write

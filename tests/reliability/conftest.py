"""Fixtures of the reliability suite: stacks of real processes, shared by its scenarios.

Two stacks are started once per session (a stack takes seconds to start): one on SQLite, one
on PostgreSQL, each with two workers and two API processes. Each scenario works in a program
of its own, starts from a simulator without faults or registrations, restarts what it kills,
and ends by checking that every process still runs. Every process a stack started is stopped
by its pid when the session ends. Each scenario's figures are printed (``pytest -s`` shows
them) and kept in ``.reliability/last_run.json`` (git-ignored), which RELIABILITY.md quotes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.reliability.stack import PROJECT, Stack

FIGURES_FILE = PROJECT / ".reliability" / "last_run.json"
POSTGRES_URL = os.environ.get(
    "RENTAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"

Record = Callable[[str, dict[str, Any]], None]


def _started(stack: Stack) -> Iterator[Stack]:
    stack.start()
    try:
        yield stack
    finally:
        codes = stack.close()
        print(f"\n[reliability] stopped {codes}; logs in {stack.logs}", flush=True)
        still = [p.name for p in stack.processes if p.alive]
        assert not still, f"processes still running after close: {still}"


@pytest.fixture(scope="session")
def sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _started(Stack(tmp_path_factory.mktemp("sqlite-stack"), workers=2, apis=2))


def _postgres_reason() -> str | None:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}".strip()
    return None


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def postgres_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reason = _postgres_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    name = f"rentan_rel_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        stack = Stack(tmp_path_factory.mktemp("pg-stack"), database_url=url, workers=2, apis=2)
        yield from _started(stack)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def stack(sqlite_stack: Stack) -> Iterator[Stack]:
    """The SQLite stack, as a scenario finds it: no faults, nobody registered yet."""
    sqlite_stack.reset_sim()
    yield sqlite_stack
    sqlite_stack.reset_sim()
    sqlite_stack.check_alive()


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
        FIGURES_FILE.parent.mkdir(exist_ok=True)
        tmp = FIGURES_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(FIGURES_FILE)

    return write

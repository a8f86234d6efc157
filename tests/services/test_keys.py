"""API keys: optional expiry, rotation with a grace period, and the audit naming the key."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from models.db import make_engine
from rentan.cli import app
from services.keys import KeyRefused, Role, authenticate, create_key, revoke_key, rotate_key

NOW = dt.datetime.now(dt.UTC)


def who(engine: Engine, key: str) -> str | None:
    with Session(engine) as session:
        principal = authenticate(session, key)
    return None if principal is None else f"{principal.name}/{principal.key_id}"


def id_of(engine: Engine, key: str) -> int:
    return int(str(who(engine, key)).split("/")[1])


def test_an_expired_key_is_refused(engine: Engine) -> None:
    fresh = create_key(engine, role=Role.AUDITOR, name="insp", expires_at=NOW + dt.timedelta(1))
    stale = create_key(engine, role=Role.AUDITOR, name="insp", expires_at=NOW)
    forever = create_key(engine, role=Role.AUDITOR, name="insp")
    assert who(engine, fresh) is not None and who(engine, forever) is not None
    assert who(engine, stale) is None


def test_rotation_keeps_the_old_key_for_its_grace_then_refuses_it(engine: Engine) -> None:
    old = create_key(engine, role=Role.DPMD_VERIFIER, name="dpmd-1")
    old_id = id_of(engine, old)
    new = rotate_key(engine, old_id, grace=dt.timedelta(hours=1), expires_at=None)
    new_id = id_of(engine, new)
    assert new_id != old_id and str(who(engine, new)).startswith("dpmd-1/")
    assert who(engine, old) is not None  # still inside its grace period
    newest = rotate_key(engine, new_id, grace=dt.timedelta(0), expires_at=None)
    assert who(engine, new) is None and who(engine, newest) is not None
    with pytest.raises(KeyRefused):
        rotate_key(engine, new_id, grace=dt.timedelta(0), expires_at=None)  # expired
    assert revoke_key(engine, old_id)
    with pytest.raises(KeyRefused):
        rotate_key(engine, old_id, grace=dt.timedelta(0), expires_at=None)  # revoked


def test_keys_rotate_on_the_command_line(db_url: str, cli_env: dict[str, str]) -> None:
    env = cli_env
    runner = CliRunner()
    made = runner.invoke(
        app, ["keys", "create", "--role", "auditor", "--expires-in-days", "30"], env=env
    )
    assert made.exit_code == 0, made.output
    listed = runner.invoke(app, ["keys", "list"], env=env)
    (line,) = [row for row in listed.output.splitlines() if "\tauditor\t" in row]
    key_id = line.split("\t")[0]
    assert "expires " in line
    rotated = runner.invoke(app, ["keys", "rotate", key_id, "--grace-hours", "0"], env=env)
    assert rotated.exit_code == 0, rotated.output
    engine = make_engine(db_url)
    try:
        assert who(engine, made.stdout.strip().splitlines()[-1]) is None
        assert who(engine, rotated.stdout.strip().splitlines()[-1]) is not None
    finally:
        engine.dispose()
    again = runner.invoke(app, ["keys", "rotate", key_id], env=env)
    assert again.exit_code == 1 and "no active key" in again.output

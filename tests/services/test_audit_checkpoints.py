"""Signed checkpoints: the tampering a hash chain alone cannot show, shown.

Someone who can write the database can cut the chain's tail off, or rewrite the chain and
compute every hash again: either leaves a chain that verifies. A checkpoint signed earlier and
kept elsewhere does not verify against it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from models import audit_chain
from models.db import session_scope
from models.tables import AuditEvent
from rentan.cli import app
from services.audit_checkpoints import CheckpointInvalid, public_key_of, read, take, verify, write

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))


def append(engine: Engine, n: int, start: int = 0) -> None:
    with session_scope(engine) as session:
        for i in range(start, start + n):
            audit_chain.append(
                session,
                audit_chain.AuditEntry(
                    event_key=f"test:{i}",
                    occurred_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i),
                    actor="dpmd-1",
                    actor_id="key:1",
                    role="dpmd_verifier",
                    action="verified",
                    enrollment_id=f"enr_{i}",
                    reason=f"step {i}",
                ),
            )


def rewrite_chain(engine: Engine, change_reason_of: int) -> None:
    """What a careful forger does: change a row, then compute every hash again."""
    with session_scope(engine) as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
        prev = audit_chain.GENESIS
        for row in rows:
            if row.id == change_reason_of:
                row.reason = "nothing happened here"
            row.prev_hash = prev
            row.hash = audit_chain.row_hash(prev, row)
            prev = row.hash
            session.add(row)
    with Session(engine) as session:
        assert audit_chain.verify_chain(session).ok  # the chain alone cannot tell


def test_a_checkpoint_holds_while_the_log_only_grows(engine: Engine, tmp_path: Path) -> None:
    append(engine, 5)
    path = write(take(engine, SEED), tmp_path)
    signed = read(path, trusted_key=public_key_of(SEED))
    assert (signed.count, signed.version) == (5, 1)
    append(engine, 3, start=5)
    verdict = verify(engine, signed)
    assert (verdict.ok, verdict.rows_since) == (True, 3), verdict


def test_a_cut_tail_is_shown(engine: Engine, tmp_path: Path) -> None:
    append(engine, 6)
    signed = read(write(take(engine, SEED), tmp_path))
    with session_scope(engine) as session:
        session.exec(delete(AuditEvent).where(col(AuditEvent.id) > signed.last_id - 2))  # type: ignore[call-overload]
    with Session(engine) as session:
        assert audit_chain.verify_chain(session).ok  # a shorter chain is still a chain
    verdict = verify(engine, signed)
    assert not verdict.ok and "cut back" in verdict.message, verdict


def test_a_recomputed_chain_is_shown(engine: Engine, tmp_path: Path) -> None:
    append(engine, 6)
    signed = read(write(take(engine, SEED), tmp_path))
    first = signed.last_id - 5
    rewrite_chain(engine, change_reason_of=first)
    verdict = verify(engine, signed)
    assert not verdict.ok and "rewritten" in verdict.message, verdict


def test_a_forged_or_foreign_checkpoint_is_refused(engine: Engine, tmp_path: Path) -> None:
    append(engine, 2)
    path = write(take(engine, SEED), tmp_path)
    data = json.loads(path.read_text())
    data["count"] = 1
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    with pytest.raises(CheckpointInvalid, match="signature"):
        read(forged)
    foreign = write(take(engine, OTHER_SEED), tmp_path / "other")
    with pytest.raises(CheckpointInvalid, match="another key"):
        read(foreign, trusted_key=public_key_of(SEED))


def test_checkpoint_and_verify_on_the_command_line(
    engine: Engine, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    append(engine, 4)
    env = cli_env
    runner = CliRunner()
    taken = runner.invoke(app, ["audit", "checkpoint", "--out", str(tmp_path / "kept")], env=env)
    assert taken.exit_code == 0, taken.output
    (path,) = (tmp_path / "kept").iterdir()
    pinned = runner.invoke(app, ["audit", "public-key"], env=env).output.strip()
    args = ["audit", "verify", "--checkpoint", str(path), "--public-key", pinned]
    ok = runner.invoke(app, args, env=env)
    assert ok.exit_code == 0 and ok.output.startswith("ok:"), ok.output
    rewrite_chain(engine, change_reason_of=1)
    broken = runner.invoke(app, args, env=env)
    assert broken.exit_code == 1 and "BROKEN" in broken.output, broken.output

"""API keys and roles: created with ``rentan keys create``, stored only as a SHA-256 hash.

Keys are 256-bit random tokens, so a plain SHA-256 (no slow hash) is enough: nobody can guess
one from its hash. The embedded stack creates one demo key per role on first start and writes
them to ``var/dev-keys.json`` so a newcomer can try the API at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from domain.regions import regions
from models.db import session_scope
from models.tables import ApiKey, utcnow

KEY_PREFIX = "rtn_"
DEV_KEYS_FILE = "dev-keys.json"
DEMO_VILLAGE = "16.03.01.2011"  # Embawang, Tanjung Agung: the demo village operator's village


class Role(StrEnum):
    VILLAGE_OPERATOR = "village_operator"
    DPMD_VERIFIER = "dpmd_verifier"
    BUDGET_OFFICER = "budget_officer"
    AUDITOR = "auditor"
    ADMIN = "admin"


class KeyRefused(ValueError):
    """A key cannot be created as asked (role/village mismatch, unknown village)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name, role and (for a village operator) village."""

    key_id: int
    name: str
    role: Role
    village_code: str | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    engine: Engine,
    *,
    role: Role,
    name: str,
    village_code: str | None = None,
    expires_at: dt.datetime | None = None,
) -> str:
    """Create a key and return it; this is the only time it is visible."""
    if role == Role.VILLAGE_OPERATOR:
        if not village_code:
            raise KeyRefused("a village_operator key needs --village")
        if village_code not in regions().villages:
            raise KeyRefused(f"unknown village code {village_code!r}")
    elif village_code:
        raise KeyRefused(f"only village_operator keys are bound to a village, not {role.value}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with session_scope(engine) as session:
        session.add(
            ApiKey(
                name=name,
                role=role.value,
                village_code=village_code,
                key_hash=hash_key(key),
                prefix=key[:12],
                expires_at=expires_at,
            )
        )
    return key


def authenticate(session: Session, key: str) -> Principal | None:
    """The key's holder, unless the key is unknown, revoked or expired."""
    row = session.exec(
        select(ApiKey).where(ApiKey.key_hash == hash_key(key), col(ApiKey.revoked_at).is_(None))
    ).first()
    if row is None or row.id is None or _expired(row, utcnow()):
        return None
    return Principal(row.id, row.name, Role(row.role), row.village_code)


def list_keys(engine: Engine) -> list[ApiKey]:
    with Session(engine) as session:
        return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))).all())


def _expired(row: ApiKey, now: dt.datetime) -> bool:
    if row.expires_at is None:
        return False
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
    return expires <= now


def rotate_key(
    engine: Engine, key_id: int, *, grace: dt.timedelta, expires_at: dt.datetime | None
) -> str:
    """A new key for the holder of ``key_id`` (same name, role, village); the old one keeps
    working for ``grace`` (while its users switch), then is refused. ``KeyRefused`` if the
    old key is revoked or expired already."""
    now = utcnow()
    with session_scope(engine) as session:
        old = session.get(ApiKey, key_id, with_for_update=True)
        if old is None or old.revoked_at is not None or _expired(old, now):
            raise KeyRefused(f"no active key with id {key_id}")
        ends = now + grace
        if old.expires_at is None or not _expired(old, ends):
            old.expires_at = ends
        session.add(old)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        session.add(
            ApiKey(
                name=old.name,
                role=old.role,
                village_code=old.village_code,
                key_hash=hash_key(key),
                prefix=key[:12],
                expires_at=expires_at,
            )
        )
    return key


def revoke_key(engine: Engine, key_id: int) -> bool:
    with session_scope(engine) as session:
        row = session.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        session.add(row)
        return True


def ensure_dev_keys(engine: Engine, data_dir: Path) -> Path:
    """One demo key per role, created once and written to ``var/dev-keys.json`` (mode 0600)."""
    path = data_dir / DEV_KEYS_FILE
    if path.exists():
        return path
    keys = {
        role.value: create_key(
            engine,
            role=role,
            name=f"demo-{role.value}",
            village_code=DEMO_VILLAGE if role == Role.VILLAGE_OPERATOR else None,
        )
        for role in Role
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"village_code": DEMO_VILLAGE, "keys": keys}, indent=2) + "\n")
    path.chmod(0o600)
    return path

"""Signed checkpoints of the audit chain, kept outside the database host.

The hash chain (models.audit_chain) shows a row edited or removed from the middle, but someone
who can write the database can also cut the chain's tail off, or rewrite it whole and compute
every hash again. A checkpoint pins the chain's head (row count, last row id, its hash, when)
under an Ed25519 signature, in a file the Inspektorat keeps: checked against the database later,
a checkpoint whose row is gone, or whose row now hashes differently, shows what was done.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import audit_chain

VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    version: int
    count: int
    last_id: int
    head_hash: str
    taken_at: str  # ISO 8601, UTC
    public_key: str  # base64 of the raw Ed25519 public key
    signature: str = ""  # base64, over every other field (canonical JSON)

    def signed_part(self) -> bytes:
        fields = {k: v for k, v in asdict(self).items() if k != "signature"}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


class CheckpointInvalid(ValueError):
    """The file is not a checkpoint, or its signature does not hold."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    rows_since: int = 0


def public_key_of(seed: bytes) -> str:
    raw = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return base64.b64encode(raw.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def take(engine: Engine, seed: bytes, *, now: dt.datetime | None = None) -> Checkpoint:
    """The chain's head now, signed."""
    with Session(engine) as session:
        head = audit_chain.head(session)
    unsigned = Checkpoint(
        version=VERSION,
        count=head.count,
        last_id=head.last_id,
        head_hash=head.hash,
        taken_at=(now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        public_key=public_key_of(seed),
    )
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(unsigned.signed_part())
    return Checkpoint(**{**asdict(unsigned), "signature": base64.b64encode(signature).decode()})


def write(checkpoint: Checkpoint, directory: Path) -> Path:
    """The checkpoint as ``audit-checkpoint-<time>.json`` in ``directory`` (never overwritten)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = checkpoint.taken_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    path = directory / f"audit-checkpoint-{stamp}-{checkpoint.last_id}.json"
    with path.open("x") as handle:
        json.dump(asdict(checkpoint), handle, indent=2, sort_keys=True)
        handle.write("\n")
    return path


def read(path: Path, *, trusted_key: str | None = None) -> Checkpoint:
    """The checkpoint in ``path``, its signature checked (against ``trusted_key`` when given:
    the public key the Inspektorat pinned, so a forged file signed with another key fails)."""
    try:
        checkpoint = Checkpoint(**json.loads(path.read_text()))
        public = base64.b64decode(checkpoint.public_key, validate=True)
        signature = base64.b64decode(checkpoint.signature, validate=True)
    except (ValueError, TypeError) as exc:
        raise CheckpointInvalid(f"{path.name} is not an audit checkpoint: {exc}") from None
    if trusted_key is not None and checkpoint.public_key != trusted_key:
        raise CheckpointInvalid(f"{path.name} is signed with another key than the one trusted")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, checkpoint.signed_part())
    except (InvalidSignature, ValueError):
        raise CheckpointInvalid(f"{path.name}: the signature does not hold") from None
    return checkpoint


def verify(engine: Engine, checkpoint: Checkpoint) -> Verdict:
    """Does the database still hold the chain the checkpoint signed, whole and unchanged?"""
    with Session(engine) as session:
        chain = audit_chain.verify_chain(session)
        if not chain.ok:
            return Verdict(False, f"the chain breaks at row {chain.first_broken}")
        then = audit_chain.head_at(session, checkpoint.last_id) if checkpoint.last_id else None
        now = audit_chain.head(session)
    if checkpoint.last_id == 0:
        return Verdict(True, f"checkpoint of an empty log; {now.count:,} rows now", now.count)
    if then is None:
        return Verdict(
            False,
            f"row {checkpoint.last_id}, the chain's head at {checkpoint.taken_at}, is gone: "
            f"the log was cut back ({now.count:,} rows now, {checkpoint.count:,} then)",
        )
    if then.hash != checkpoint.head_hash:
        return Verdict(
            False,
            f"row {checkpoint.last_id} no longer has the hash signed at {checkpoint.taken_at}: "
            "the log was rewritten up to it",
        )
    if then.count != checkpoint.count:
        return Verdict(
            False,
            f"{checkpoint.count:,} rows led to row {checkpoint.last_id} at "
            f"{checkpoint.taken_at}, {then.count:,} do now: rows were removed or added before it",
        )
    since = now.count - then.count
    return Verdict(True, f"the log holds the checkpoint of {checkpoint.taken_at}", since)

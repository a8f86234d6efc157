"""Backup and restore of the embedded stack: Temporal's database and the projection, together.

Temporal holds the truth and the projection follows it; a backup must pair the two as they
were at one moment, so it is taken with the stack stopped (``rentan up`` not running). Each
file is copied with SQLite's online backup (its write-ahead log included) and listed with its
SHA-256 in a manifest. The keys are not in the backup: a backup read without them shows no
personal data in Temporal's payloads and no birth date in the projection. The manifest keeps a
fingerprint of each key so a restore refuses keys other than the ones the data was sealed with.

A restore checks the manifest, puts the files in place (moving any it replaces aside), and
``rentan reconcile --check`` afterwards confirms the pair agrees. Production (PostgreSQL) has
its own procedure in README.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from core.settings import PAYLOAD_KEY_FILE, Settings
from rentan.stack import DATA_VERSION, DATA_VERSION_FILE, StackError, port_in_use

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    version: str
    taken_at: str
    files: dict[str, str]  # name -> sha256
    key_fingerprints: dict[str, str]


def _files(settings: Settings) -> dict[str, Path]:
    return {"temporal.db": settings.temporal_db_file, "rentan.db": settings.data_dir / "rentan.db"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprints(settings: Settings) -> dict[str, str]:
    """Which keys sealed the data (a hash of each, never the key)."""
    keys = {"payload_key": settings.payload_key_bytes(), "id_secret": settings.id_secret_bytes()}
    return {
        name: hashlib.sha256(b"rentan-key:" + key).hexdigest()[:16] for name, key in keys.items()
    }


def _refuse_if_running(settings: Settings) -> None:
    for port, what in ((settings.temporal_port, "Temporal"), (settings.api_port, "the API")):
        if port_in_use("127.0.0.1", port):
            raise StackError(
                f"{what} is running (port {port}): stop `rentan up` first, so that Temporal and "
                "the projection are copied as they were at one moment"
            )


def _refuse_other_databases(settings: Settings) -> None:
    if settings.database_url and not settings.database_url.startswith("sqlite"):
        raise StackError(
            "the projection is not the embedded SQLite: back up PostgreSQL as README's "
            "'Backup and restore' says"
        )


def _copy(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    # A `with` block does not close a sqlite3 connection.
    src.close()
    dst.close()


def backup(settings: Settings, destination: Path) -> Manifest:
    """Copy the stopped stack's two databases into ``destination`` (new or empty)."""
    _refuse_other_databases(settings)
    _refuse_if_running(settings)
    files = _files(settings)
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise StackError(f"nothing to back up: {', '.join(missing)} missing")
    destination.mkdir(parents=True, exist_ok=True)
    if any(destination.iterdir()):
        raise StackError(f"{destination} is not empty: back up into a new directory")
    for name, path in files.items():
        _copy(path, destination / name)
    manifest = Manifest(
        version=DATA_VERSION,
        taken_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        files={name: _sha256(destination / name) for name in files},
        key_fingerprints=_fingerprints(settings),
    )
    (destination / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def restore(settings: Settings, source: Path) -> Manifest:
    """Put a backup's databases in place of the stopped stack's, moving those aside."""
    _refuse_other_databases(settings)
    _refuse_if_running(settings)
    try:
        manifest = Manifest(**json.loads((source / MANIFEST).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise StackError(f"{source} holds no rentan backup ({MANIFEST}: {exc})") from None
    if manifest.version != DATA_VERSION:
        raise StackError(f"the backup is of rentan {manifest.version}, not {DATA_VERSION}")
    for name, digest in manifest.files.items():
        if _sha256(source / name) != digest:
            raise StackError(f"{source / name} is not the file the backup took (checksum)")
    missing_keys = [
        name
        for name, given in (
            (PAYLOAD_KEY_FILE, settings.payload_key),
            ("id-secret", settings.id_secret),
        )
        if not given and not (settings.data_dir / name).exists()
    ]
    if missing_keys or manifest.key_fingerprints != _fingerprints(settings):
        raise StackError(
            "the keys in use are not the ones this backup's data was sealed with: put back "
            "RENTAN_PAYLOAD_KEY and RENTAN_ID_SECRET (or var/payload-key and var/id-secret) "
            "from where they are kept"
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for name, target in _files(settings).items():
        for part in (
            target,
            target.with_name(target.name + "-wal"),
            target.with_name(target.name + "-shm"),
        ):
            if part.exists():
                part.rename(part.with_name(f"{part.name}.before-restore-{stamp}"))
        _copy(source / name, target)
    (settings.data_dir / DATA_VERSION_FILE).write_text(DATA_VERSION + "\n")
    return manifest

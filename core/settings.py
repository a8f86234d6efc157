"""The one settings object of rentan, read from the environment (prefix ``RENTAN_``).

Two deployments share it:

* ``embedded`` (the default): everything on one machine under ``data_dir`` (``./var``): the
  Temporal dev server's SQLite file, the application's SQLite database, the generated
  payload-encryption key and the demo API keys. Nothing to set up.
* ``production``: a Temporal cluster and PostgreSQL; secrets must be given, nothing is generated.

Bad settings stop the process at start with a message naming the variable (``SettingsError``).
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import secrets
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RENTAN_"
MIN_SECRET_CHARS = 32
MIN_SECRET_BITS = 96
MIN_BITS_PER_CHAR = 3.0  # "changeme" repeated has 2.75; 32 random hex digits about 3.6
PAYLOAD_KEY_FILE = "payload-key"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BaseSettings):
    """Everything rentan reads from its environment, validated once at start."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    env: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Path("var")

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "rentan-enrollment"
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_api_key: str | None = None

    # Application database: SQLite under data_dir unless given.
    database_url: str = ""

    # HTTP front end and the BPJS adapter's target.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    bpjs_sim_host: str = "127.0.0.1"
    bpjs_base_url: str = "http://127.0.0.1:8100"
    # One BPJS call's deadline, and how far its retries back off (transient failures retry
    # for as long as it takes). Given to each enrollment when it is nominated.
    bpjs_timeout_s: float = Field(default=10.0, gt=0, le=300)
    bpjs_max_backoff_s: float = Field(default=120.0, gt=0, le=3600)

    # How long a task for a workflow a worker holds in its cache waits for that worker before
    # any worker takes it (replaying the history): how soon enrollments go on after a worker
    # died. Shorter moves more replays to other workers when one is merely slow.
    worker_sticky_timeout_s: float = Field(default=10.0, gt=0, le=300)

    # Where a worker serves its Prometheus metrics (the SDK's, and ``rentan_projection_lag``):
    # host:port, or empty for none. Each worker on one machine needs its own.
    metrics_address: str = "127.0.0.1:9464"

    # AES-256-GCM key for Temporal payloads, base64 of 32 bytes. Generated under data_dir for the
    # embedded stack; required in production so that no worker ever invents its own key.
    payload_key: str | None = None
    payload_key_id: str = "k1"
    # Keys rotated out, still needed to read what they sealed: "id:base64,id:base64".
    payload_old_keys: str = ""

    # HMAC secret: workflow ids derive from NIK + program without exposing the NIK. It can never
    # change: every enrollment id and person key is derived from it.
    id_secret: str | None = None

    # Ed25519 seed (base64 of 32 bytes) signing the audit chain's checkpoints
    # (``rentan audit checkpoint``): keep it where the checkpoints are taken, off the database
    # host. Generated under data_dir for the embedded stack.
    audit_signing_key: str | None = None

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("must be host:port, e.g. 127.0.0.1:7233")
        return value

    @field_validator("metrics_address")
    @classmethod
    def _metrics_host_port(cls, value: str) -> str:
        if value:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("must be host:port, e.g. 127.0.0.1:9464, or empty")
        return value

    @field_validator("bpjs_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL, e.g. http://127.0.0.1:8100")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    @field_validator("payload_key", "audit_signing_key")
    @classmethod
    def _key_is_32_bytes(cls, value: str | None) -> str | None:
        if value is not None:
            _check_256_bit_key(value)
        return value

    @field_validator("id_secret")
    @classmethod
    def _secret_is_strong(cls, value: str | None) -> str | None:
        """Long and varied enough that guessing it (and so every person's key) is hopeless."""
        if value is not None:
            if len(value) < MIN_SECRET_CHARS:
                raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
            bits = _entropy_bits(value)
            if bits < MIN_SECRET_BITS or bits / len(value) < MIN_BITS_PER_CHAR:
                raise ValueError(
                    "is too predictable (few distinct characters); generate one, e.g. "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        return value

    @field_validator("payload_old_keys")
    @classmethod
    def _old_keys(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            key_id, sep, key = item.partition(":")
            if not sep or not key_id:
                raise ValueError("must be id:base64-key pairs separated by commas")
            _check_256_bit_key(key)
        return value

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.env == "production":
            missing = [
                name
                for name, value in (
                    ("payload_key", self.payload_key),
                    ("id_secret", self.id_secret),
                    ("database_url", self.database_url),
                )
                if not value
            ]
            if missing:
                names = ", ".join(ENV_PREFIX + m.upper() for m in missing)
                raise ValueError(f"production requires {names}")
        return self

    # Derived values -----------------------------------------------------------------------

    @property
    def temporal_host(self) -> str:
        return self.temporal_address.rpartition(":")[0]

    @property
    def temporal_port(self) -> int:
        return int(self.temporal_address.rpartition(":")[2])

    @property
    def metrics_port(self) -> int | None:
        return int(self.metrics_address.rpartition(":")[2]) if self.metrics_address else None

    @property
    def bpjs_port(self) -> int:
        parts = urlsplit(self.bpjs_base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'rentan.db').resolve()}"

    @property
    def temporal_db_file(self) -> Path:
        return self.data_dir / "temporal.db"

    def payload_key_bytes(self) -> bytes:
        """The payload key; in the embedded stack generated once into ``data_dir``."""
        if self.payload_key:
            return base64.b64decode(self.payload_key)
        return base64.b64decode(_embedded_secret(self.data_dir / PAYLOAD_KEY_FILE, 32))

    def payload_keys(self) -> dict[str, bytes]:
        """Every payload key by id: the current one and those rotated out."""
        keys = {
            key_id.strip(): base64.b64decode(key)
            for key_id, _, key in (
                part.strip().partition(":") for part in self.payload_old_keys.split(",")
            )
            if key_id.strip()
        }
        keys[self.payload_key_id] = self.payload_key_bytes()
        return keys

    def audit_signing_key_bytes(self) -> bytes:
        """The checkpoints' signing seed; in the embedded stack generated once into data_dir."""
        if self.audit_signing_key:
            return base64.b64decode(self.audit_signing_key)
        return base64.b64decode(_embedded_secret(self.data_dir / "audit-signing-key", 32))

    def id_secret_bytes(self) -> bytes:
        """The secret behind workflow ids; in the embedded stack generated once into data_dir."""
        if self.id_secret:
            return self.id_secret.encode()
        return base64.b64decode(_embedded_secret(self.data_dir / "id-secret", 32))


def _entropy_bits(value: str) -> float:
    """Shannon entropy of the characters, times the length: a rough bound on guessing work."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values()) * len(value)


def _check_256_bit_key(value: str) -> None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64") from exc
    if len(raw) != 32:
        raise ValueError("must be base64 of exactly 32 bytes (a 256-bit key)")


def _embedded_secret(path: Path, size: int) -> str:
    """Read a base64 secret from ``path``, creating it (mode 0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = base64.b64encode(secrets.token_bytes(size)).decode()
    # O_EXCL: when two processes race to create it, exactly one writes and both read that one.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def load_settings() -> Settings:
    """Build the settings from the environment, or raise ``SettingsError`` naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            variable = ENV_PREFIX + field.upper() if field else "settings"
            problems.append(f"{variable}: {message}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, created once."""
    return load_settings()

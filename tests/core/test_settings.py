"""Settings: defaults of the embedded stack, validation naming the variable, secrets, the CLI."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import (
    ENV_PREFIX,
    PAYLOAD_KEY_FILE,
    Settings,
    SettingsError,
    get_settings,
    load_settings,
)
from rentan.cli import app
from services.nominations import bpjs_timing
from workflows.messages import BpjsTiming

GOOD_KEY = base64.b64encode(b"x" * 32).decode()
STRONG_SECRET = "q8Zr2vN1xKp0wT7mLd4sHy9cFb3gJe6uAo5iRn"  # 38 varied characters


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No RENTAN_* variable of the surrounding shell leaks in; data_dir is this test's."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RENTAN_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_load_defaults_embedded(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.env == "embedded"
    assert settings.data_dir == tmp_path
    assert settings.task_queue == "rentan-enrollment"
    assert settings.temporal_address == "127.0.0.1:7233"
    assert (settings.temporal_host, settings.temporal_port) == ("127.0.0.1", 7233)
    assert settings.database_url == ""
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'rentan.db').resolve()}"
    assert settings.payload_key is None
    assert settings.bpjs_port == 8100
    assert (settings.bpjs_timeout_s, settings.bpjs_max_backoff_s) == (10.0, 120.0)
    assert settings.metrics_address == "127.0.0.1:9464"
    assert settings.metrics_port == 9464


def test_load_defaults_data_dir_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RENTAN_DATA_DIR")
    settings = load_settings()
    assert settings.data_dir == Path("var")
    assert settings.resolved_database_url == f"sqlite:///{Path('var/rentan.db').resolve()}"


def test_load_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENTAN_TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("RENTAN_TASK_QUEUE", "other-queue")
    monkeypatch.setenv("RENTAN_BPJS_BASE_URL", "https://bpjs.example/")
    monkeypatch.setenv("RENTAN_DATABASE_URL", "postgresql://u@db/rentan")
    monkeypatch.setenv("RENTAN_BPJS_TIMEOUT_S", "2.5")
    monkeypatch.setenv("RENTAN_BPJS_MAX_BACKOFF_S", "30")
    monkeypatch.setenv("RENTAN_METRICS_ADDRESS", "0.0.0.0:9100")
    settings = load_settings()
    assert settings.temporal_host == "temporal.internal"
    assert settings.task_queue == "other-queue"
    assert settings.bpjs_base_url == "https://bpjs.example"
    assert settings.bpjs_port == 443
    assert settings.resolved_database_url == "postgresql://u@db/rentan"
    assert (settings.bpjs_timeout_s, settings.bpjs_max_backoff_s) == (2.5, 30.0)
    assert (settings.metrics_address, settings.metrics_port) == ("0.0.0.0:9100", 9100)


def test_load_empty_metrics_address_serves_no_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENTAN_METRICS_ADDRESS", "")
    settings = load_settings()
    assert settings.metrics_address == ""
    assert settings.metrics_port is None


def test_bpjs_timing_given_to_an_enrollment_follows_the_settings(tmp_path: Path) -> None:
    """A nominated enrollment is told the settings' BPJS deadline (half again as long, in which
    a worker that died mid-call is noticed) and backoff."""
    settings = Settings(data_dir=tmp_path, bpjs_timeout_s=4.0, bpjs_max_backoff_s=60.0)
    assert bpjs_timing(settings) == BpjsTiming(call_timeout_s=6.0, max_backoff_s=60.0)
    # What an enrollment started without timings assumes is what the default settings give.
    assert bpjs_timing(Settings(data_dir=tmp_path)) == BpjsTiming()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RENTAN_TEMPORAL_ADDRESS", "nonsense"),
        ("RENTAN_TEMPORAL_ADDRESS", "127.0.0.1:port"),
        ("RENTAN_BPJS_BASE_URL", "ftp://bpjs.example"),
        ("RENTAN_BPJS_BASE_URL", "not a url"),
        ("RENTAN_DATABASE_URL", "mysql://u@db/rentan"),
        ("RENTAN_PAYLOAD_KEY", base64.b64encode(b"short").decode()),
        ("RENTAN_PAYLOAD_KEY", "not base64!"),
        ("RENTAN_API_PORT", "70000"),
        ("RENTAN_ENV", "staging"),
        ("RENTAN_BPJS_TIMEOUT_S", "0"),
        ("RENTAN_BPJS_TIMEOUT_S", "-1"),
        ("RENTAN_BPJS_TIMEOUT_S", "301"),
        ("RENTAN_BPJS_TIMEOUT_S", "soon"),
        ("RENTAN_BPJS_MAX_BACKOFF_S", "0"),
        ("RENTAN_BPJS_MAX_BACKOFF_S", "3601"),
        ("RENTAN_METRICS_ADDRESS", "9464"),
        ("RENTAN_METRICS_ADDRESS", ":9464"),
        ("RENTAN_METRICS_ADDRESS", "127.0.0.1:metrics"),
        ("RENTAN_METRICS_ADDRESS", "127.0.0.1:0"),
        ("RENTAN_METRICS_ADDRESS", "127.0.0.1:65536"),
    ],
)
def test_load_bad_value_names_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert variable in str(caught.value)


def test_load_bad_values_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENTAN_TEMPORAL_ADDRESS", "nonsense")
    monkeypatch.setenv("RENTAN_DATABASE_URL", "mysql://u@db/rentan")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "RENTAN_TEMPORAL_ADDRESS" in str(caught.value)
    assert "RENTAN_DATABASE_URL" in str(caught.value)


def test_load_production_without_secrets_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENTAN_ENV", "production")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    for variable in ("RENTAN_PAYLOAD_KEY", "RENTAN_ID_SECRET", "RENTAN_DATABASE_URL"):
        assert variable in message


def test_load_production_names_only_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENTAN_ENV", "production")
    monkeypatch.setenv("RENTAN_PAYLOAD_KEY", GOOD_KEY)
    monkeypatch.setenv("RENTAN_DATABASE_URL", "postgresql://u@db/rentan")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "RENTAN_ID_SECRET" in message
    assert "RENTAN_PAYLOAD_KEY" not in message
    assert "RENTAN_DATABASE_URL" not in message


def test_load_production_with_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RENTAN_ENV", "production")
    monkeypatch.setenv("RENTAN_PAYLOAD_KEY", GOOD_KEY)
    monkeypatch.setenv("RENTAN_ID_SECRET", STRONG_SECRET)
    monkeypatch.setenv("RENTAN_DATABASE_URL", "postgresql://u@db/rentan")
    settings = load_settings()
    assert settings.payload_key_bytes() == b"x" * 32
    assert settings.id_secret_bytes() == STRONG_SECRET.encode()
    assert not (tmp_path / PAYLOAD_KEY_FILE).exists()  # nothing generated in production


def test_payload_key_embedded_generated_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Settings(data_dir=data_dir).payload_key_bytes()
    path = data_dir / PAYLOAD_KEY_FILE
    assert len(first) == 32
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text()
    assert Settings(data_dir=data_dir).payload_key_bytes() == first
    assert Settings(data_dir=data_dir).payload_key_bytes() == first
    assert path.read_text() == written
    # Another data dir is another stack with its own key.
    assert Settings(data_dir=tmp_path / "other").payload_key_bytes() != first


def test_payload_key_given_not_written(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, payload_key=GOOD_KEY)
    assert settings.payload_key_bytes() == b"x" * 32
    assert not (tmp_path / PAYLOAD_KEY_FILE).exists()


def test_id_secret_embedded_generated_once(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).id_secret_bytes()
    assert len(first) == 32
    assert stat.S_IMODE((tmp_path / "id-secret").stat().st_mode) == 0o600
    assert Settings(data_dir=tmp_path).id_secret_bytes() == first


def test_get_settings_cached() -> None:
    assert get_settings() is get_settings()


def test_cli_bad_settings_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["db", "upgrade"],
        env={
            "RENTAN_TEMPORAL_ADDRESS": "nonsense",
            "RENTAN_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        },
    )
    assert result.exit_code == 2, result.output
    assert "RENTAN_TEMPORAL_ADDRESS" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "cli.db").exists()  # nothing ran


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("s3cret", "at least 32 characters"),
        ("a" * 64, "too predictable"),
        ("ab" * 32, "too predictable"),
        ("2026-12-07" * 4, "too predictable"),
    ],
)
def test_a_weak_id_secret_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, secret: str, why: str
) -> None:
    """Every person's key derives from it: a guessable one gives every NIK's hash away."""
    monkeypatch.setenv("RENTAN_ID_SECRET", secret)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "RENTAN_ID_SECRET" in str(caught.value) and why in str(caught.value)
    assert secret not in str(caught.value)  # the secret is never echoed


def test_old_payload_keys_are_kept_for_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    old = base64.b64encode(b"o" * 32).decode()
    monkeypatch.setenv("RENTAN_PAYLOAD_KEY", GOOD_KEY)
    monkeypatch.setenv("RENTAN_PAYLOAD_KEY_ID", "k2")
    monkeypatch.setenv("RENTAN_PAYLOAD_OLD_KEYS", f"k1:{old}")
    assert load_settings().payload_keys() == {"k1": b"o" * 32, "k2": b"x" * 32}
    monkeypatch.setenv("RENTAN_PAYLOAD_OLD_KEYS", "k1-without-a-key")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "RENTAN_PAYLOAD_OLD_KEYS" in str(caught.value)

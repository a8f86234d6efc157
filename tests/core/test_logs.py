"""Logging: JSON lines off a terminal, bound context, masked NIKs, stdlib loggers in one format."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import core.logs
from core.logs import configure_logging, get_logger, mask_nik

NIK = "1603011505850001"
MASKED = "160301********01"
ROUTED = ("uvicorn", "uvicorn.error", "uvicorn.access", "temporalio", "alembic", "sqlalchemy")


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Let configure_logging run again in each test, then put back what was there before."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_named = {
        name: (lg.handlers[:], lg.propagate, lg.level)
        for name in ROUTED
        for lg in [logging.getLogger(name)]
    }
    saved_structlog = structlog.get_config()
    saved_flag = core.logs._configured
    core.logs._configured = False
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    structlog.configure(**saved_structlog)
    core.logs._configured = saved_flag
    root.handlers[:], level = saved_root
    root.setLevel(level)
    for name, (handlers, propagate, lvl) in saved_named.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.propagate = propagate
        lg.setLevel(lvl)


def _lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_configure_logging_json_off_tty(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", fmt="auto")  # captured stderr is not a TTY
    structlog.contextvars.bind_contextvars(request_id="req-123")
    get_logger("rentan.test").info("enrollment started", enrollment_id="E-1", count=3)

    [line] = _lines(capsys.readouterr().err)
    assert line["event"] == "enrollment started"
    assert line["level"] == "info"
    assert line["logger"] == "rentan.test"
    assert line["request_id"] == "req-123"
    assert line["enrollment_id"] == "E-1"
    assert line["count"] == 3
    stamp = dt.datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - stamp) < dt.timedelta(minutes=1)


def test_configure_logging_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="WARNING", fmt="json")
    log = get_logger("rentan.test")
    log.info("hidden")
    log.warning("shown")
    assert [line["event"] for line in _lines(capsys.readouterr().err)] == ["shown"]


def test_configure_logging_console_on_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    configure_logging(level="INFO", fmt="auto")
    get_logger("rentan.test").info("console line", village="Tanjung Agung")
    out = terminal.getvalue()
    assert "console line" in out
    assert "Tanjung Agung" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])


def test_configure_logging_once(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", fmt="json")
    configure_logging(level="ERROR", fmt="console")  # ignored
    get_logger("rentan.test").info("still json")
    [line] = _lines(capsys.readouterr().err)
    assert line["event"] == "still json"
    assert len(logging.getLogger().handlers) == 1


def test_mask_nik_cases() -> None:
    assert mask_nik(NIK) == MASKED
    assert mask_nik(f"nik={NIK}, again {NIK}.") == f"nik={MASKED}, again {MASKED}."
    # Not a free-standing 16-digit run: left alone.
    assert mask_nik("160301150585000") == "160301150585000"  # 15 digits
    assert mask_nik("16030115058500012") == "16030115058500012"  # 17 digits
    assert mask_nik("KPJ 12345678") == "KPJ 12345678"


def test_log_nik_masked_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", fmt="json")
    structlog.contextvars.bind_contextvars(subject=f"person {NIK}")
    get_logger("rentan.test").info(f"registering {NIK}", nik=NIK, nik_int=int(NIK), note=f"({NIK})")

    err = capsys.readouterr().err
    assert NIK not in err
    [line] = _lines(err)
    assert line["event"] == f"registering {MASKED}"
    assert line["nik"] == MASKED
    assert line["nik_int"] == MASKED
    assert line["note"] == f"({MASKED})"
    assert line["subject"] == f"person {MASKED}"


def test_stdlib_logger_same_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", fmt="auto")
    structlog.contextvars.bind_contextvars(request_id="req-456")
    logging.getLogger("uvicorn.error").warning("worker for %s failed", NIK)

    err = capsys.readouterr().err
    assert NIK not in err
    [line] = _lines(err)
    assert line["event"] == f"worker for {MASKED} failed"
    assert line["level"] == "warning"
    assert line["logger"] == "uvicorn.error"
    assert line["request_id"] == "req-456"
    assert dt.datetime.fromisoformat(line["timestamp"]).utcoffset() == dt.timedelta(0)


def test_stdlib_logger_exception_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", fmt="json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("temporalio").exception("activity failed")
    [line] = _lines(capsys.readouterr().err)  # the traceback stays inside one JSON line
    assert line["event"] == "activity failed"
    assert line["level"] == "error"
    assert "RuntimeError: boom" in line["exception"]


def test_configure_logging_quiets_noise(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", fmt="json")
    logging.getLogger("uvicorn.access").info("GET / 200")
    logging.getLogger("sqlalchemy.engine").info("SELECT 1")
    logging.getLogger("httpx").info("HTTP Request: GET")
    assert capsys.readouterr().err == ""


def test_nik_in_an_exception_is_masked_in_json_and_console(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The traceback is formatted after the event's processors ran: the mask must come after
    it, in the finished line, in either format."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for fmt in ("json", "console"):
        core.logs._configured = False
        terminal = Terminal()
        monkeypatch.setattr("sys.stderr", terminal)
        configure_logging(level="INFO", fmt=fmt)
        try:
            person = {"nik": NIK}
            raise ValueError(f"no such person {person['nik']}")
        except ValueError:
            get_logger("rentan.test").exception("lookup failed")
            logging.getLogger("temporalio").exception("activity failed for %s", NIK)
        out = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())  # the console's colours
        assert NIK not in out, (fmt, out)
        assert f"no such person {MASKED}" in out, fmt


def test_a_database_error_carries_no_row_values(capsys: pytest.CaptureFixture[str]) -> None:
    """SQLAlchemy puts a statement's parameters in its errors; the engine hides them."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from models.db import make_engine

    configure_logging(level="INFO", fmt="json")
    engine = make_engine("sqlite://")
    with engine.begin() as sql:
        sql.execute(text("CREATE TABLE person (nik TEXT PRIMARY KEY, name TEXT)"))
        sql.execute(text("INSERT INTO person VALUES (:nik, :name)"), {"nik": NIK, "name": "Siti"})
    try:
        with engine.begin() as sql:
            sql.execute(
                text("INSERT INTO person VALUES (:nik, :name)"), {"nik": NIK, "name": "Siti Lagi"}
            )
    except IntegrityError as exc:
        assert NIK not in str(exc) and "Siti Lagi" not in str(exc)
        get_logger("rentan.test").exception("write failed")
    err = capsys.readouterr().err
    assert NIK not in err and "Siti Lagi" not in err
    assert "hidden due to hide_parameters" in err

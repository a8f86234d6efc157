"""structlog, configured once per process.

JSON lines when stderr is not a terminal (what operators ship to their log store), the console
renderer on one. Standard-library loggers (uvicorn, temporalio, sqlalchemy, alembic) are routed
through the same processors so every line has the same shape. Context (request id, actor,
enrollment id, workflow id) is bound with ``structlog.contextvars`` rather than formatted into
messages. Any 16-digit run that looks like a NIK is masked before a line is written.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor

_configured = False

# A NIK is 16 digits; mask any free-standing 16-digit run, whichever field it hides in.
_NIK_RUN = re.compile(r"(?<!\d)(\d{6})\d{6}(\d{4})(?!\d)")


def mask_nik(value: str) -> str:
    """``1603015204900001`` -> ``160301******0001``: region and serial kept, birth date hidden."""
    return _NIK_RUN.sub(r"\1******\2", value)


def _mask_personal_data(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = mask_nik(value)
        elif isinstance(value, int) and len(str(value)) == 16:
            event_dict[key] = mask_nik(str(value))
    return event_dict


def configure_logging(*, level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and the standard library; later calls are no-ops."""
    global _configured
    if _configured:
        return
    _configured = True

    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_personal_data,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if use_json else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; route them to the root so they share the format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "temporalio", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # SQL echo is noise at INFO; warnings still come through.
    logging.getLogger("sqlalchemy").setLevel(max(logging.WARNING, root.level))
    # One line per BPJS request is noise; failures surface through the activities.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    # Access lines are replaced by rentan's own one-line-per-request log.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _identity(_: Any, __: str, event_dict: EventDict) -> EventDict:
    return event_dict


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A bound structlog logger; configure_logging must have run (the CLI does it)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger

"""structlog, configured once per process.

JSON lines when stderr is not a terminal (what operators ship to their log store), the console
renderer on one. Standard-library loggers (uvicorn, temporalio, sqlalchemy, alembic) are routed
through the same processors so every line has the same shape. Context (request id, actor,
enrollment id, workflow id) is bound with ``structlog.contextvars`` rather than formatted into
messages. Any 16-digit run that looks like a NIK is masked in the finished line, after the
renderer and the traceback formatting, so an exception's message or a value in a traceback is
masked too.
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
_NIK_RUN = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{2})(?!\d)")


def mask_nik(value: str) -> str:
    """``1603015204900001`` -> ``160301********01``, as ``domain.nik.mask`` shows a NIK."""
    return _NIK_RUN.sub(r"\1********\2", value)


def _nik_as_text(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """A NIK held as a number would render as a bare 16-digit JSON number, which the line's
    mask would turn into invalid JSON: render it as text first."""
    for key, value in event_dict.items():
        if isinstance(value, int) and not isinstance(value, bool) and len(str(value)) == 16:
            event_dict[key] = str(value)
    return event_dict


class _MaskingFormatter(structlog.stdlib.ProcessorFormatter):
    """The finished line, whatever produced it (the event, a traceback, a foreign logger's
    message), with every NIK masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_nik(super().format(record))


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
        _nik_as_text,
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
    formatter = _MaskingFormatter(
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

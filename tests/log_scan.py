"""Every log line of the test run, scanned for a full NIK (a pytest plugin).

What rentan logs in this process is rendered by its own formatter (``core.logs``, JSON) into
each test's captured stderr; what the stacks' processes log goes to ``*.log`` files under the
run's temporary directory. Both are read: each test's captured output as its report arrives,
the files when the run ends. A valid 16-digit NIK anywhere fails the run, naming where.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from stdnum.id import nik as stdnum_nik

from core.logs import configure_logging

_RUN = re.compile(r"(?<!\d)\d{16}(?!\d)")
_MASKED = re.compile(r"(?<!\d)\d{6}\*{8}\d{2}(?!\d)")


class LogScan:
    def __init__(self) -> None:
        self.lines = 0
        self.masked = 0
        self.found: list[str] = []

    def scan(self, text: str, where: str) -> None:
        for number, line in enumerate(text.splitlines(), start=1):
            self.lines += 1
            self.masked += len(_MASKED.findall(line))
            for run in _RUN.findall(line):
                if stdnum_nik.is_valid(run):
                    self.found.append(f"{where}:{number}: a NIK {run[:6]}…")


SCAN = LogScan()


def pytest_configure(config: pytest.Config) -> None:
    # rentan's own format for this process's logs, as a deployment writes them.
    configure_logging(level="INFO", fmt="json")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for title, content in report.sections:
        if title.startswith(("Captured stderr", "Captured stdout")):
            SCAN.scan(content, f"{report.nodeid} ({title})")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = factory.getbasetemp() if factory is not None else None
    if isinstance(base, Path) and base.exists():
        for path in sorted(base.rglob("*.log")):
            SCAN.scan(path.read_text(errors="replace"), str(path.relative_to(base)))
    if SCAN.found:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(
        f"log scan: {SCAN.lines:,} log lines read, {SCAN.masked:,} masked NIKs, "
        f"{len(SCAN.found)} full NIKs"
    )
    for finding in SCAN.found[:50]:
        terminalreporter.write_line(f"  FULL NIK IN A LOG LINE: {finding}")

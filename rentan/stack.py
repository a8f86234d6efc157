"""The embedded stack behind ``rentan up``: every component as a child process, in the foreground.

Order of start: Temporal dev server (SQLite file under ``var/``, WAL), database migrations, the
BPJS simulator, the worker (unless ``--no-worker``), the API. Each child is its own process so a
crash in one is visible and a worker can be killed and restarted like in production. Ctrl-C or
SIGTERM stops them in reverse order; if any child dies, the others are stopped and ``up`` fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, GetSystemInfoRequest

from core.binaries import temporal_cli
from core.logs import get_logger
from core.settings import Settings
from workflows.search_attributes import dev_server_flags

log = get_logger("rentan.stack")

STOP_GRACE_S = 15.0
# Ports are chosen below the range the kernel hands out to outgoing connections (32768-60999 on
# Linux): a port from that range can be taken by any client's connection between our choosing
# it and the server binding it (a Temporal dev server died of exactly that in CI).
_LISTEN_PORTS = (20000, 32000)


class StackError(RuntimeError):
    """The stack cannot start (a port is taken, a component died or never became ready)."""


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Where the child's output goes; the terminal when None.
    log_path: Path | None = None

    def start(self) -> None:
        output = None if self.log_path is None else self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            # Own process group: a Ctrl-C in the terminal reaches ``up``, which then stops each
            # child in order instead of all of them dying at once.
            start_new_session=True,
        )
        if output is not None:
            output.close()  # the child holds its own copy
        log.info("component started", component=self.name, pid=self.process.pid)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("component did not stop in time, killing", component=self.name)
            self.process.kill()
            self.process.wait()
        log.info("component stopped", component=self.name, code=self.process.returncode)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def check_ports(settings: Settings, *, with_worker: bool = True) -> None:
    """Fail with a message naming the port, what wanted it and the variable that moves it."""
    wanted = [
        (settings.temporal_port, "Temporal frontend", "RENTAN_TEMPORAL_ADDRESS"),
        (settings.temporal_ui_port, "Temporal UI", "RENTAN_TEMPORAL_UI_PORT"),
        (settings.api_port, "rentan API", "RENTAN_API_PORT"),
        (settings.bpjs_port, "BPJS simulator", "RENTAN_BPJS_BASE_URL"),
    ]
    if with_worker and settings.metrics_port is not None:
        wanted.append((settings.metrics_port, "worker metrics", "RENTAN_METRICS_ADDRESS"))
    for port, what, variable in wanted:
        if port_in_use("127.0.0.1", port):
            raise StackError(
                f"port {port} ({what}) is already in use: is another `rentan up` running? "
                f"Stop it, or choose another port with {variable}."
            )


# The version of the state ``rentan up`` keeps under the data dir; another version's state is
# refused, as this version's workflows cannot replay the other's.
DATA_VERSION = "0.2"
DATA_VERSION_FILE = "rentan-version"


def check_data_dir(settings: Settings) -> None:
    """Refuse a data dir written by another version of rentan, naming the command that starts
    afresh; mark a new one as this version's."""
    data = settings.data_dir
    marker = data / DATA_VERSION_FILE
    written = marker.read_text().strip() if marker.exists() else None
    has_state = settings.temporal_db_file.exists() or (data / "rentan.db").exists()
    if written != DATA_VERSION and (written is not None or has_state):
        old = written or "0.1"
        raise StackError(
            f"{data}/ holds state written by rentan {old}; its enrollment workflows cannot run "
            f"on version {DATA_VERSION}. To start afresh, keeping the old state aside: "
            f"mv {data} {data}-{old} && rentan up"
        )
    data.mkdir(parents=True, exist_ok=True)
    marker.write_text(DATA_VERSION + "\n")


# The dev server's SQLite: WAL with synchronous=normal is three times faster than the default
# pragmas, and it survives kill -9 (DESIGN.md). A larger page cache (cache_size=-131072, 128 MiB
# per connection) was measured and left out: the same ratio for the seed cohort with and without
# it (1.363 against 1.360) for 250 MB more of the server's memory.
DEV_SERVER_SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def dev_server_sqlite_flags() -> list[str]:
    return [arg for pragma in DEV_SERVER_SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)]


def temporal_dev_server_argv(settings: Settings) -> list[str]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return [
        str(temporal_cli()),
        "server",
        "start-dev",
        "--ip",
        settings.temporal_host,
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--db-filename",
        str(settings.temporal_db_file),
        *dev_server_sqlite_flags(),
        # "warn" reports every slow gRPC call under load; errors are what operators need here.
        "--log-level",
        "error",
        # Unless this is set explicitly, the dev server reads its search attributes from its
        # database at every workflow task completion, start with attributes and visibility write
        # (eleven reads per enrollment, as measured): it is on for interactive use, where
        # attributes are added while it runs. Ours are all registered at start-up (below), so the
        # cache a production cluster keeps is safe here.
        "--dynamic-config-value",
        "system.forceSearchAttributesCacheRefreshOnRead=false",
        *dev_server_flags(),
    ]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports on ``host`` that nothing listens on (held together while chosen)."""
    draw = random.SystemRandom()
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket()
            try:
                sock.bind((host, draw.randrange(*_LISTEN_PORTS)))
            except OSError:  # taken: draw again
                sock.close()
                continue
            held.append(sock)
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


def rentan_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "rentan", *args]


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout_s: float, children: list[Child]
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children:
            code = child.exited()
            if code is not None:
                raise StackError(f"{child.name} exited with code {code} while waiting for {what}")
        if await check():
            return
        await asyncio.sleep(0.25)
    raise StackError(f"{what} not ready after {timeout_s:.0f}s")


async def run_stack(
    settings: Settings,
    *,
    with_worker: bool = True,
    after_ready: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Run the stack until a signal arrives or a component dies; return the exit code."""
    from models.migrate import upgrade  # deferred: keeps ``rentan --help`` fast

    check_data_dir(settings)
    check_ports(settings, with_worker=with_worker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    temporal = Child("temporal", temporal_dev_server_argv(settings))
    children = [temporal]
    exit_code = 0
    try:
        temporal.start()
        await wait_until(
            lambda: temporal_ready(settings),
            what="Temporal",
            timeout_s=60,
            children=children,
        )
        upgrade(settings.resolved_database_url)
        log.info("database ready", url=_redacted(settings.resolved_database_url))
        keys_file = _dev_keys(settings)
        log.info("demo API keys (one per role)", file=str(keys_file))

        components = [Child("bpjs-sim", rentan_argv("bpjs-sim"))]
        if with_worker:
            components.append(Child("worker", rentan_argv("worker")))
        components.append(Child("api", rentan_argv("api")))
        for child in components:
            child.start()
            children.append(child)

        ready_url = f"http://{settings.api_host}:{settings.api_port}/readyz"
        await wait_until(
            lambda: answers_200(ready_url), what="the API", timeout_s=90, children=children
        )
        log.info(
            "rentan is up",
            api=f"http://{settings.api_host}:{settings.api_port}/docs",
            temporal_ui=f"http://{settings.temporal_host}:{settings.temporal_ui_port}",
            worker="running" if with_worker else "not started (--no-worker)",
        )
        watch = asyncio.create_task(_watch(children, stop))
        if after_ready is not None:
            await after_ready()
        await stop.wait()
        watch.cancel()
        dead = [c for c in children if c.exited() is not None]
        if dead:
            exit_code = 1
            for child in dead:
                log.error("component died", component=child.name, code=child.exited())
    except StackError as exc:
        log.error("rentan up failed", reason=str(exc))
        exit_code = 1
    finally:
        for child in reversed(children):
            child.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return exit_code


async def _watch(children: list[Child], stop: asyncio.Event) -> None:
    while not stop.is_set():
        if any(child.exited() is not None for child in children):
            stop.set()
            return
        await asyncio.sleep(0.5)


async def temporal_ready(settings: Settings) -> bool:
    """True once the frontend answers and the namespace exists (not merely the port is open)."""
    from core.temporal import connect

    try:
        client = await connect(settings)
        await client.workflow_service.get_system_info(GetSystemInfoRequest())
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=settings.temporal_namespace)
        )
    except Exception:  # any failure means "not yet"; the caller has the deadline
        return False
    return True


async def answers_200(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(url)).status_code == 200
    return False


def _dev_keys(settings: Settings) -> Path:
    from models.db import make_engine
    from services.keys import ensure_dev_keys

    engine = make_engine(settings.resolved_database_url)
    try:
        return ensure_dev_keys(engine, settings.data_dir)
    finally:
        engine.dispose()


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest

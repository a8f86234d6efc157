"""``rentan up`` as a user runs it: separate processes, real ports, a SQLite-backed dev server."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from domain.worker_rows import WorkerRow
from models.db import make_engine
from models.tables import Program
from services.nominations import nominate
from services.programs import FundingSourceSpec, ProgramSpec, create_program
from core.settings import Settings
from rentan.stack import free_ports
from core.temporal import connect
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import Actor

pytestmark = pytest.mark.stack
STARTUP_S = 120


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a stack of its own: its own data dir and free ports for everything."""
    temporal_port, ui_port, api_port, sim_port = free_ports(4)
    return {
        **os.environ,
        "RENTAN_DATA_DIR": str(tmp_path / "var"),
        "RENTAN_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "RENTAN_TEMPORAL_UI_PORT": str(ui_port),
        "RENTAN_API_PORT": str(api_port),
        "RENTAN_BPJS_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "RENTAN_LOG_FORMAT": "json",
    }


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(
        data_dir=Path(env["RENTAN_DATA_DIR"]),
        temporal_address=env["RENTAN_TEMPORAL_ADDRESS"],
        api_port=int(env["RENTAN_API_PORT"]),
        temporal_ui_port=int(env["RENTAN_TEMPORAL_UI_PORT"]),
        bpjs_base_url=env["RENTAN_BPJS_BASE_URL"],
    )


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes], *, timeout_s: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"rentan up exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not ready after {STARTUP_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def up_no_worker(stack_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path / "up.log"
    process = start([sys.executable, "-m", "rentan", "up", "--no-worker"], stack_env, log)
    try:
        wait_ready(f"http://127.0.0.1:{stack_env['RENTAN_API_PORT']}/readyz", process, log)
        yield process
    finally:
        if process.poll() is None:
            stop(process)


def make_program(settings: Settings) -> Program:
    engine = make_engine(settings.resolved_database_url)
    start_day = dt.date.today().replace(day=1)
    program = create_program(
        engine,
        ProgramSpec(
            code="UP-TEST",
            name="stack test",
            period_start=start_day,
            period_end=start_day + dt.timedelta(days=80),
            funding_sources=[FundingSourceSpec("APBD", "APBD", 10**9, ["linmas"])],
        ),
    )
    engine.dispose()
    return program


async def test_up_serves_readyz_ui_and_a_separate_worker_and_resumes_after_restart(
    stack_env: dict[str, str], tmp_path: Path, up_no_worker: subprocess.Popen[bytes]
) -> None:
    settings = settings_of(stack_env)
    async with httpx.AsyncClient(timeout=5) as http:
        ready = await http.get(f"http://127.0.0.1:{settings.api_port}/readyz")
        ui = await http.get(f"http://127.0.0.1:{settings.temporal_ui_port}/")
    assert ready.json()["checks"] == {"database": "ok", "temporal": "ok"}
    assert ui.status_code == 200

    # A worker run apart, as `python worker.py`, picks up the stack's work.
    worker = start([sys.executable, "worker.py"], stack_env, tmp_path / "worker.log")
    try:
        program = make_program(settings)
        client = await connect(settings)
        engine = make_engine(settings.resolved_database_url)
        result = await nominate(
            client,
            engine,
            program=program,
            village_code="16.03.01.2011",
            rows=[
                (
                    1,
                    WorkerRow(
                        nik="1603011505850001",
                        full_name="Warga Stack",
                        birth_date="1985-05-15",
                        gender="L",
                        category="linmas",
                    ),
                )
            ],
            actor=Actor("op", "village_operator", "16.03.01.2011"),
            id_secret=settings.id_secret_bytes(),
            task_queue=settings.task_queue,
            today=dt.date.today(),
        )
        engine.dispose()
        (accepted,) = result.accepted
        assert accepted.state == "nominated"
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert stop(up_no_worker) == 0
    for port in (settings.temporal_port, settings.api_port, settings.temporal_ui_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"

    # The same var/ again: the enrollment is still there, in Temporal and in the database.
    log = tmp_path / "up-again.log"
    again = start([sys.executable, "-m", "rentan", "up", "--no-worker"], stack_env, log)
    try:
        wait_ready(f"http://127.0.0.1:{settings.api_port}/readyz", again, log)
        client = await connect(settings)
        description = await client.get_workflow_handle(accepted.enrollment_id).describe()
        assert description.status is not None and description.status.name == "RUNNING"
        query = f"RentanProgram='{program.code}'"
        listed = [w.id async for w in client.list_workflows(query)]
        assert listed == [accepted.enrollment_id]
        assert description.workflow_type == EnrollmentWorkflow.__name__
    finally:
        assert stop(again) == 0


def test_up_refuses_a_taken_port_naming_it(stack_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", int(stack_env["RENTAN_API_PORT"])))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "rentan", "up"],
            env=stack_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert f"port {stack_env['RENTAN_API_PORT']}" in output
    assert "RENTAN_API_PORT" in output

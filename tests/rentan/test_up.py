"""``rentan up`` as a user runs it: separate processes, real ports, a SQLite-backed dev server,
a worker serving its metrics, and a data dir of this version only."""

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

from core.settings import Settings
from core.temporal import connect
from domain.records import Actor
from domain.worker_rows import WorkerRow
from models.db import make_engine
from models.tables import Program
from rentan.stack import DATA_VERSION, DATA_VERSION_FILE, StackError, check_data_dir, free_ports
from services.nominations import bpjs_timing, nominate
from services.programs import FundingSourceSpec, ProgramSpec, create_program
from workflows.enrollment import EnrollmentWorkflow

pytestmark = pytest.mark.stack
STARTUP_S = 120
# What a refusal before anything starts may take: the interpreter and the CLI's imports.
REFUSAL_S = 20


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a stack of its own: its own data dir and free ports for everything, the
    worker's metrics included."""
    temporal_port, ui_port, api_port, sim_port, metrics_port = free_ports(5)
    return {
        **os.environ,
        "RENTAN_DATA_DIR": str(tmp_path / "var"),
        "RENTAN_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "RENTAN_TEMPORAL_UI_PORT": str(ui_port),
        "RENTAN_API_PORT": str(api_port),
        "RENTAN_BPJS_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "RENTAN_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        "RENTAN_LOG_FORMAT": "json",
    }


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(
        data_dir=Path(env["RENTAN_DATA_DIR"]),
        temporal_address=env["RENTAN_TEMPORAL_ADDRESS"],
        api_port=int(env["RENTAN_API_PORT"]),
        temporal_ui_port=int(env["RENTAN_TEMPORAL_UI_PORT"]),
        bpjs_base_url=env["RENTAN_BPJS_BASE_URL"],
        metrics_address=env["RENTAN_METRICS_ADDRESS"],
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


def scrape_until(url: str, wanted: str, process: subprocess.Popen[bytes], log: Path) -> str:
    """The worker's metrics page once it shows ``wanted``."""
    text = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the worker exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            text = httpx.get(url, timeout=2).text
        except httpx.HTTPError:
            text = ""
        if wanted in text:
            return text
        time.sleep(0.2)
    pytest.fail(f"{wanted} not in {url} after 30 s:\n{text[-3000:]}")


def run_up(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "rentan", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - began


def one_line(text: str) -> str:
    """Output as one line of single spaces: a long message may be wrapped on the terminal."""
    return " ".join(text.split())


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


async def test_up_serves_readyz_ui_and_a_separate_worker_with_metrics_and_resumes_after_restart(
    stack_env: dict[str, str], tmp_path: Path, up_no_worker: subprocess.Popen[bytes]
) -> None:
    settings = settings_of(stack_env)
    async with httpx.AsyncClient(timeout=5) as http:
        ready = await http.get(f"http://127.0.0.1:{settings.api_port}/readyz")
        ui = await http.get(f"http://127.0.0.1:{settings.temporal_ui_port}/")
    assert ready.json()["checks"] == {"database": "ok", "temporal": "ok"}
    assert ui.status_code == 200
    # A fresh data dir is marked as this version's.
    assert (settings.data_dir / DATA_VERSION_FILE).read_text().strip() == DATA_VERSION

    # A worker run apart, as `python worker.py`, picks up the stack's work.
    worker_log = tmp_path / "worker.log"
    worker = start([sys.executable, "worker.py"], stack_env, worker_log)
    try:
        program = make_program(settings)
        client = await connect(settings)
        result = await nominate(
            client,
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
            bpjs=bpjs_timing(settings),
            today=dt.date.today(),
        )
        (accepted,) = result.accepted
        assert accepted.state == "nominated"
        # The nomination's record reached the projection through the worker, which measured
        # how long that took, for Prometheus to scrape.
        metrics = scrape_until(
            f"http://{settings.metrics_address}/metrics",
            "rentan_projection_lag",
            worker,
            worker_log,
        )
        counts = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("rentan_projection_lag_count{")
            and 'activity_type="nominate_list"' in line
        ]
        assert counts == [1.0]  # the list's one record, written by its batch's activity
        assert "\ntemporal_" in metrics  # the SDK's own metrics are served there too
    finally:
        assert stop(worker) == 0, worker_log.read_text()[-3000:]
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


@pytest.mark.parametrize(
    ("variable", "what"),
    [("RENTAN_API_PORT", "rentan API"), ("RENTAN_METRICS_ADDRESS", "worker metrics")],
)
def test_up_refuses_a_taken_port_naming_it(
    stack_env: dict[str, str], variable: str, what: str
) -> None:
    port = int(stack_env[variable].rpartition(":")[2])
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done, _ = run_up(stack_env)
    assert done.returncode == 2  # refused before anything started
    output = one_line(done.stdout + done.stderr)
    assert "Traceback" not in output
    assert f"port {port} ({what}) is already in use" in output
    assert variable in output


def test_up_refuses_the_data_dir_of_rentan_0_1_naming_the_command_that_starts_afresh(
    stack_env: dict[str, str],
) -> None:
    data = Path(stack_env["RENTAN_DATA_DIR"])
    data.mkdir()
    (data / "temporal.db").write_bytes(b"0.1's workflows")
    (data / "rentan.db").write_bytes(b"0.1's projection")

    done, took = run_up(stack_env)

    assert done.returncode != 0
    assert f"mv {data} {data}-0.1 && rentan up" in one_line(done.stdout + done.stderr)
    assert took < REFUSAL_S  # refused before anything started
    # Nothing was touched: no marker, the old state as it was, no server on its port.
    assert sorted(p.name for p in data.iterdir()) == ["rentan.db", "temporal.db"]
    assert (data / "temporal.db").read_bytes() == b"0.1's workflows"
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", settings_of(stack_env).temporal_port)) != 0


@pytest.mark.parametrize("state_file", ["temporal.db", "rentan.db"])
def test_check_data_dir_takes_state_without_a_marker_for_rentan_0_1(
    tmp_path: Path, state_file: str
) -> None:
    (tmp_path / state_file).touch()
    with pytest.raises(StackError, match=r"written by rentan 0\.1") as refused:
        check_data_dir(Settings(data_dir=tmp_path))
    assert f"mv {tmp_path} {tmp_path}-0.1 && rentan up" in str(refused.value)
    assert not (tmp_path / DATA_VERSION_FILE).exists()


def test_check_data_dir_refuses_a_marker_of_another_version(tmp_path: Path) -> None:
    (tmp_path / DATA_VERSION_FILE).write_text("0.3\n")
    with pytest.raises(StackError) as refused:
        check_data_dir(Settings(data_dir=tmp_path))
    assert f"mv {tmp_path} {tmp_path}-0.3 && rentan up" in str(refused.value)
    assert (tmp_path / DATA_VERSION_FILE).read_text() == "0.3\n"


def test_check_data_dir_marks_a_new_dir_and_takes_its_own_again(tmp_path: Path) -> None:
    data = tmp_path / "var"
    check_data_dir(Settings(data_dir=data))
    assert (data / DATA_VERSION_FILE).read_text().strip() == DATA_VERSION
    (data / "temporal.db").touch()  # state this version wrote
    check_data_dir(Settings(data_dir=data))
    assert (data / DATA_VERSION_FILE).read_text().strip() == DATA_VERSION

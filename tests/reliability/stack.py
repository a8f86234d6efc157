"""A small process harness: the real rentan stack as separate processes on 127.0.0.1.

Each component is started the way an operator starts it (``python -m rentan temporal``,
``bpjs-sim``, ``api``, ``worker``), with one environment: its own data dir, free ports, fixed
secrets and, when asked, a PostgreSQL database. Every process is started in a session of its
own and stopped by its pid only (SIGTERM, then SIGKILL); nothing is ever killed by name.
Everything is driven over HTTP (httpx): the API as each role would, the simulator for its
counters.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bpjs_sim.simulator import person_ref
from domain.categories import Category
from domain.worker_rows import WorkerRow
from models.db import make_engine
from rentan import cohort
from rentan.stack import free_ports
from services.keys import Role, create_key

HOST = "127.0.0.1"
PROJECT = Path(__file__).resolve().parents[2]
STARTUP_S = 90.0
STOP_GRACE_S = 15.0
# How long the projection may lag its workflows after a fault (README, "Architecture"): a batch
# whose worker died is run again once its heartbeats stop (10 s), a registration once its call's
# deadline passed (1.5 times the stack's BPJS timeout).
LAG_BOUND_S = 30.0
# The stack's BPJS deadlines: a suite that waits out production's would take minutes.
BPJS_TIMEOUT_S = 2.0
BPJS_MAX_BACKOFF_S = 2.0
ALL_CATEGORIES = [c.value for c in Category]
# States an enrollment does not leave on its own while the test waits (registration settled).
SETTLED = {
    "active",
    "registration_failed",
    "already_covered",
    "rejected",
    "withdrawn",
    "terminated",
    "expired",
    "lapsed",
}


class StackFailure(AssertionError):
    """A component died or never became ready; the message carries the tail of its log."""


@dataclass
class Proc:
    """One child process, started in its own session, stopped by its pid."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        handle = self.log.open("ab")
        handle.write(f"\n--- start #{self.starts + 1} at {time.time():.3f} ---\n".encode())
        handle.flush()
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=PROJECT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        handle.close()
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=30)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; the exit code (None if never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.popen.send_signal(signal.SIGKILL)
                self.popen.wait(timeout=30)
        return self.popen.returncode

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Keys:
    admin: str
    verifier: str
    budget: str
    auditor: str
    operators: dict[str, str] = field(default_factory=dict)  # by village code


class Stack:
    """Temporal dev server, BPJS simulator, API(s) and worker(s), each a process of its own."""

    def __init__(
        self,
        root: Path,
        *,
        database_url: str | None = None,
        workers: int = 1,
        apis: int = 1,
        sim_args: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.data_dir = root / "var"
        self.logs = root / "logs"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{self.data_dir / 'rentan.db'}"
        ports = free_ports(3 + apis + workers)
        self.temporal_port, ui_port, self.sim_port = ports[:3]
        self.api_ports = ports[3 : 3 + apis]
        metrics_ports = ports[3 + apis :]
        # Only this stack's settings: nothing RENTAN_* leaks in from the calling environment.
        base = {k: v for k, v in os.environ.items() if not k.startswith("RENTAN_")}
        self.env = {
            **base,
            "RENTAN_DATA_DIR": str(self.data_dir),
            "RENTAN_DATABASE_URL": self.database_url,
            "RENTAN_TEMPORAL_ADDRESS": f"{HOST}:{self.temporal_port}",
            "RENTAN_TEMPORAL_UI_PORT": str(ui_port),
            "RENTAN_API_HOST": HOST,
            "RENTAN_API_PORT": str(self.api_ports[0]),
            "RENTAN_BPJS_BASE_URL": f"http://{HOST}:{self.sim_port}",
            "RENTAN_BPJS_SIM_HOST": HOST,
            "RENTAN_PAYLOAD_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "RENTAN_ID_SECRET": secrets.token_urlsafe(32),
            "RENTAN_BPJS_TIMEOUT_S": str(BPJS_TIMEOUT_S),
            "RENTAN_BPJS_MAX_BACKOFF_S": str(BPJS_MAX_BACKOFF_S),
            # The scenarios kill workers: the survivors take their enrollments on sooner.
            "RENTAN_WORKER_STICKY_TIMEOUT_S": "2",
            "RENTAN_LOG_FORMAT": "json",
            "RENTAN_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        self.temporal = self._proc("temporal", "temporal")
        self.sim = self._proc("bpjs-sim", "bpjs-sim", *sim_args)
        self.apis = [
            self._proc(f"api-{i}", "api", env={"RENTAN_API_PORT": str(port)})
            for i, port in enumerate(self.api_ports)
        ]
        self.workers = [
            self._proc(f"worker-{i}", "worker", env={"RENTAN_METRICS_ADDRESS": f"{HOST}:{port}"})
            for i, port in enumerate(metrics_ports)
        ]
        self.http = httpx.Client(timeout=httpx.Timeout(120.0, connect=5.0))
        self._engine: Engine | None = None
        self.timings: dict[str, float] = {}

    def _proc(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        return Proc(
            name,
            [sys.executable, "-m", "rentan", *args],
            {**self.env, **(env or {})},
            self.logs / f"{name}.log",
        )

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def processes(self) -> list[Proc]:
        return [self.temporal, self.sim, *self.workers, *self.apis]

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_ports[0]}"

    def api_urls(self) -> list[str]:
        return [f"http://{HOST}:{port}" for port in self.api_ports]

    @property
    def sim_url(self) -> str:
        return f"http://{HOST}:{self.sim_port}"

    def start(self) -> None:
        began = time.monotonic()
        self.temporal.start()
        self.sim.start()
        self.rentan("db", "upgrade")
        for proc in (*self.workers, *self.apis):
            proc.start()
        for url in self.api_urls():
            self.wait_http(f"{url}/readyz", what=f"API {url}")
        self.wait_http(f"{self.sim_url}/healthz", what="BPJS simulator")
        self.timings["startup_s"] = round(time.monotonic() - began, 2)

    def close(self) -> dict[str, int | None]:
        """Stop every process this stack started, in reverse order; their exit codes."""
        codes: dict[str, int | None] = {}
        for proc in reversed(self.processes):
            codes[proc.name] = proc.stop()
        self.http.close()
        if self._engine is not None:
            self._engine.dispose()
        return codes

    def rentan(self, *args: str, timeout_s: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "rentan", *args],
            env=self.env,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise StackFailure(f"rentan {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def check_alive(self) -> None:
        for proc in self.processes:
            if proc.popen is not None and not proc.alive:
                raise StackFailure(f"{proc.name} exited with {proc.returncode()}:\n{proc.tail()}")

    def wait_http(self, url: str, *, what: str, timeout_s: float = STARTUP_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if self.http.get(url, timeout=3).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise StackFailure(f"{what} not ready after {timeout_s:.0f}s at {url}")

    def wait_temporal_listening(self, timeout_s: float = STARTUP_S) -> float:
        """Seconds until the Temporal frontend's port accepts connections again."""
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            self.check_alive()
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((HOST, self.temporal_port)) == 0:
                    return time.monotonic() - began
            time.sleep(0.1)
        raise StackFailure(f"Temporal did not listen again within {timeout_s:.0f}s")

    # --- the database, read directly ---------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(query), params)]

    def open_commitments(self, program: str) -> list[tuple[Any, ...]]:
        """``(approval_id, enrollment_id, amount_idr)`` of the program's open commitments."""
        return self.sql(
            "SELECT approval_id, enrollment_id, amount_idr FROM commitment "
            "WHERE program_code = :program AND released_at IS NULL ORDER BY id",
            program=program,
        )

    def reset_sim(self) -> None:
        """The simulator as new: no faults, nobody registered (each scenario counts its own)."""
        self.http.put(f"{self.sim_url}/v1/faults", json={}).raise_for_status()
        self.http.post(f"{self.sim_url}/v1/admin/reset").raise_for_status()

    def set_faults(self, **knobs: Any) -> None:
        self.http.put(f"{self.sim_url}/v1/faults", json=knobs).raise_for_status()

    def count_workflows(self, query: str) -> int:
        """How many workflows Temporal's visibility lists for ``query``."""

        async def count() -> int:
            client = await Client.connect(self.env["RENTAN_TEMPORAL_ADDRESS"])
            return (await client.count_workflows(query)).count

        return asyncio.run(count())

    def wait_for(
        self,
        check: Callable[[], bool],
        *,
        what: str,
        timeout_s: float = 60,
        alive: bool = True,
    ) -> float:
        """Poll ``check`` until it holds (the one polling helper of these scenarios), checking
        meanwhile that every process runs unless ``alive`` is False (one was killed on
        purpose); seconds waited."""
        began = time.monotonic()
        while not check():
            if alive:
                self.check_alive()
            if time.monotonic() - began > timeout_s:
                raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
            time.sleep(0.05)
        return time.monotonic() - began

    def reconcile(self, program: str) -> tuple[int, str]:
        """``rentan reconcile --check --program``: its exit code and what it printed."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "rentan",
                "reconcile",
                "--check",
                "--program",
                program,
                "--rate",
                "1000",
                "--restart",
            ],
            env=self.env,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.returncode, done.stdout

    def reconcile_until_clean(self, program: str, *, since: float) -> dict[str, Any]:
        """Run ``rentan reconcile --check`` until it finds no difference, at most until
        ``LAG_BOUND_S`` after ``since`` (a ``time.monotonic()``); its figures."""
        checks = 0
        first_differences: int | None = None
        while True:
            code, out = self.reconcile(program)
            checks += 1
            last = out.strip().splitlines()[-1] if out.strip() else ""
            differences = int(last.split(": ")[-1].split(" ")[0].replace(",", "")) if last else -1
            if first_differences is None:
                first_differences = differences
            if code == 0 and differences == 0:
                return {
                    "reconcile_differences": 0,
                    "reconcile_first_check_differences": first_differences,
                    "reconcile_checks": checks,
                    "reconcile_clean_after_s": round(time.monotonic() - since, 1),
                    "reconcile_output": last,
                }
            if time.monotonic() - since > LAG_BOUND_S:
                raise AssertionError(
                    f"reconcile still finds differences {LAG_BOUND_S:.0f} s after the fault:\n{out}"
                )
            time.sleep(1.0)

    # --- keys -----------------------------------------------------------------------------------

    def make_keys(self, villages: Iterable[str]) -> Keys:
        engine = self.engine

        def key(role: Role, village: str | None = None) -> str:
            return create_key(engine, role=role, name=f"rel-{role.value}", village_code=village)

        keys = Keys(
            admin=key(Role.ADMIN),
            verifier=key(Role.DPMD_VERIFIER),
            budget=key(Role.BUDGET_OFFICER),
            auditor=key(Role.AUDITOR),
        )
        for village in villages:
            keys.operators[village] = key(Role.VILLAGE_OPERATOR, village)
        return keys

    def key_via_cli(self, role: str, village: str | None = None) -> str:
        """``rentan keys create`` as an operator runs it: the key is the last line printed."""
        args = ["keys", "create", "--role", role]
        if village:
            args += ["--village", village]
        return self.rentan(*args).strip().splitlines()[-1]

    # --- the API and the simulator over HTTP ----------------------------------------------------

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def call(
        self, method: str, path: str, key: str, *, expect: int | None = 200, **kwargs: Any
    ) -> httpx.Response:
        response = self.http.request(method, self.api_url + path, headers=self.auth(key), **kwargs)
        if expect is not None and response.status_code != expect:
            raise AssertionError(
                f"{method} {path}: {response.status_code} (expected {expect}): "
                f"{response.text[:1500]}"
            )
        return response

    def create_program(
        self, keys: Keys, code: str, *, ceiling_idr: int, months: int = 3
    ) -> dict[str, Any]:
        start, end = program_period(months)
        body = {
            "code": code,
            "name": f"reliability {code}",
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "funding_sources": [
                {
                    "code": "APBD",
                    "name": "APBD Muara Enim",
                    "ceiling_idr": ceiling_idr,
                    "categories": ALL_CATEGORIES,
                }
            ],
        }
        data: dict[str, Any] = self.call(
            "POST", "/v1/programs", keys.admin, json=body, expect=201
        ).json()
        return data

    def nominate(
        self, keys: Keys, program: str, village: str, rows: list[WorkerRow]
    ) -> dict[str, Any]:
        body = {"village_code": village, "workers": [worker_json(r) for r in rows]}
        data: dict[str, Any] = self.call(
            "POST", f"/v1/programs/{program}/nominations", keys.operators[village], json=body
        ).json()
        return data

    def nominate_all(
        self, keys: Keys, program: str, lists: dict[str, list[WorkerRow]]
    ) -> dict[str, str]:
        """Every village's list, villages in parallel; ``{nik: enrollment_id}``. A list the API
        answers 503 (Temporal did not take it) is sent again, as an operator would."""

        def one(village: str, rows: list[WorkerRow]) -> dict[str, str]:
            body = {"village_code": village, "workers": [worker_json(r) for r in rows]}
            deadline = time.monotonic() + 180
            while True:
                response = self.http.post(
                    f"{self.api_url}/v1/programs/{program}/nominations",
                    headers=self.auth(keys.operators[village]),
                    json=body,
                )
                if response.status_code != 503 or time.monotonic() > deadline:
                    break
                time.sleep(1.0)  # the answer's Retry-After
            assert response.status_code == 200, response.text[:1500]
            result = response.json()
            assert not result["rejected"], f"{village}: rows refused: {result['rejected']}"
            by_row = {a["row"]: a["enrollment_id"] for a in result["accepted"]}
            return {row.nik or "": by_row[n] for n, row in enumerate(rows, start=1)}

        accepted: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=len(lists)) as pool:
            for got in pool.map(lambda item: one(*item), lists.items()):
                accepted.update(got)
        return accepted

    def enrollments(self, key: str, program: str, **filters: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"program": program, "limit": "500", **filters}
            if cursor:
                params["cursor"] = cursor
            page = self.call("GET", "/v1/enrollments", key, params=params).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def states(self, key: str, program: str) -> Counter[str]:
        return Counter(e["state"] for e in self.enrollments(key, program))

    def wait_settled(
        self, key: str, program: str, *, expected: int, timeout_s: float, poll_s: float = 0.5
    ) -> Counter[str]:
        """Poll the API until ``expected`` enrollments have settled; their state counts."""
        deadline = time.monotonic() + timeout_s
        counts: Counter[str] = Counter()
        while time.monotonic() < deadline:
            try:
                counts = self.states(key, program)
            except httpx.TransportError:
                counts = Counter()  # the API restarting: ask again
            if sum(n for s, n in counts.items() if s in SETTLED) >= expected:
                return counts
            time.sleep(poll_s)
        raise AssertionError(
            f"{program}: not settled after {timeout_s:.0f}s: {dict(counts)} of {expected}"
        )

    def verify_village(self, keys: Keys, program: str, village: str) -> list[dict[str, Any]]:
        body = {"village_code": village, "approve": True, "reason": "matches the DPMD roster"}
        results: list[dict[str, Any]] = self.call(
            "POST", f"/v1/programs/{program}/verifications", keys.verifier, json=body
        ).json()["results"]
        return results

    def approve_village(self, keys: Keys, program: str, village: str) -> dict[str, Any]:
        body = {"funding_source": "APBD", "village_code": village, "reason": "APBD 2025"}
        data: dict[str, Any] = self.call(
            "POST", f"/v1/programs/{program}/budget-approvals", keys.budget, json=body
        ).json()
        return data

    def audit_verify(self, keys: Keys) -> dict[str, Any]:
        data: dict[str, Any] = self.call("GET", "/v1/audit/verify", keys.auditor).json()
        return data

    def sim_counts(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(f"{self.sim_url}/v1/registrations/counts").json()
        return data

    def sim_faults(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(f"{self.sim_url}/v1/faults").json()
        return data


# --- cohorts ---------------------------------------------------------------------------------


def program_period(months: int = 3) -> tuple[dt.date, dt.date]:
    """A period from the first day of this month, ``months`` calendar months long."""
    start = dt.date.today().replace(day=1)
    end = start
    for _ in range(months):
        end = (end + dt.timedelta(days=32)).replace(day=1)
    return start, end - dt.timedelta(days=1)


def village_lists(size: int, *, villages: int, seed: int) -> dict[str, list[WorkerRow]]:
    """``size`` synthetic workers (valid NIKs, unique) spread over ``villages`` desa lists."""
    start, _ = program_period()
    lists = [
        v
        for v in cohort.generate((villages + 4) * 100, period_start=start, seed=seed)
        if not v.village.is_kelurahan and len(v.rows) >= 50
    ][:villages]
    assert len(lists) == villages, "the cohort generator gave fewer desa than asked"
    per = -(-size // villages)
    out: dict[str, list[WorkerRow]] = {}
    left = size
    for item in lists:
        take = min(per, left)
        out[item.village.code] = item.rows[:take]
        left -= take
    assert sum(len(r) for r in out.values()) == size
    return out


def worker_json(row: WorkerRow) -> dict[str, str]:
    return {k: v for k, v in row.__dict__.items() if v is not None}


# --- the invariants, checked from outside ----------------------------------------------------


def exactly_once_figures(
    stack: Stack, keys: Keys, program: str, accepted: dict[str, str]
) -> dict[str, Any]:
    """Losses and duplicates of a cohort: API, database and simulator compared.

    ``accepted`` maps each NIK the API accepted to its enrollment id. Lost: an accepted
    enrollment missing or not active. Duplicated: an enrollment row more than once per person,
    a person registered at BPJS more than once, a KPJ number on two enrollments, or a BPJS
    registration of somebody never accepted.
    """
    enrollments = stack.enrollments(keys.auditor, program)
    by_id = {e["id"]: e for e in enrollments}
    states = Counter(e["state"] for e in enrollments)
    missing = sorted(set(accepted.values()) - set(by_id))
    not_active = sorted(
        i for i in accepted.values() if i in by_id and by_id[i]["state"] != "active"
    )
    rows = stack.sql(
        "SELECT count(*), count(DISTINCT person_key) FROM enrollment WHERE program_code = :p",
        p=program,
    )[0]
    kpj = Counter(e["kpj_number"] for e in enrollments if e["kpj_number"])
    sim = stack.sim_counts()
    expected_refs = {person_ref(nik) for nik in accepted}
    registered_twice = {ref: n for ref, n in sim["counts"].items() if n > 1}
    strangers = set(sim["counts"]) - expected_refs
    unregistered = expected_refs - set(sim["counts"])
    # The same decision or transition written twice (a replayed local activity, say).
    audit_twice = stack.sql(
        "SELECT count(*) FROM (SELECT a.enrollment_id FROM audit_event a "
        "JOIN enrollment e ON e.id = a.enrollment_id WHERE e.program_code = :p "
        "GROUP BY a.enrollment_id, a.action, a.state_before, a.state_after "
        "HAVING count(*) > 1) twice",
        p=program,
    )[0][0]
    return {
        "accepted": len(accepted),
        "enrollments_checked": len(enrollments),
        "states": dict(states),
        "lost": len(missing) + len(not_active),
        "lost_ids": (missing + not_active)[:10],
        "enrollment_rows": rows[0],
        "distinct_people_in_rows": rows[1],
        "duplicate_rows": rows[0] - rows[1] + (len(enrollments) - len(by_id)),
        "bpjs_registrations": sim["total"],
        "bpjs_max_per_person": sim["max_per_person"],
        "bpjs_registered_twice": len(registered_twice),
        "bpjs_unexpected_people": len(strangers),
        "bpjs_not_registered": len(unregistered),
        "kpj_on_two_enrollments": sum(1 for n in kpj.values() if n > 1),
        "audit_events_written_twice": audit_twice,
    }


def assert_exactly_once(figures: dict[str, Any]) -> None:
    n = figures["accepted"]
    assert figures["lost"] == 0, f"lost enrollments: {figures['lost_ids']} ({figures['states']})"
    assert figures["states"] == {"active": n}, figures["states"]
    assert figures["enrollment_rows"] == n == figures["distinct_people_in_rows"], figures
    assert figures["duplicate_rows"] == 0, figures
    assert figures["bpjs_registrations"] == n, figures
    assert figures["bpjs_max_per_person"] == 1, figures
    assert figures["bpjs_registered_twice"] == 0, figures
    assert figures["bpjs_unexpected_people"] == 0, figures
    assert figures["bpjs_not_registered"] == 0, figures
    assert figures["kpj_on_two_enrollments"] == 0, figures
    assert figures["audit_events_written_twice"] == 0, figures


def registration_attempts(stack: Stack, program: str) -> dict[str, Any]:
    """From Temporal's histories: registrations that took more than one attempt, and why.

    The server writes an activity's started event when the activity ends, with the attempt
    that ended it and the failure of the attempt before: a start-to-close timeout there means
    the attempt before died with its worker (or its answer never reached the server).
    """
    workflow_ids = [
        row[0]
        for row in stack.sql(
            "SELECT workflow_id FROM enrollment WHERE program_code = :p", p=program
        )
    ]

    async def read() -> dict[str, Any]:
        client = await Client.connect(stack.env["RENTAN_TEMPORAL_ADDRESS"])
        attempts: list[int] = []
        after_timeout = 0
        for workflow_id in workflow_ids:
            scheduled: dict[int, str] = {}
            handle = client.get_workflow_handle(workflow_id)
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                    attributes = event.activity_task_scheduled_event_attributes
                    scheduled[event.event_id] = attributes.activity_type.name
                elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    started = event.activity_task_started_event_attributes
                    if scheduled.get(started.scheduled_event_id) != "register_participant":
                        continue
                    attempts.append(started.attempt)
                    if started.last_failure.HasField("timeout_failure_info"):
                        after_timeout += 1
        return {
            "registration_activities": len(attempts),
            "registrations_retried": sum(1 for a in attempts if a > 1),
            "registration_attempts_total": sum(attempts),
            "registration_max_attempt": max(attempts, default=0),
            "registrations_retried_after_timeout": after_timeout,
        }

    return asyncio.run(read())

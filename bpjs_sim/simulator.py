"""A simulator of BPJS Ketenagakerjaan's participant registration API (``rentan bpjs-sim``).

It stands in for the real BPJS service that ``activities.bpjs.HttpBpjsAdapter`` calls, and behaves
the way the engine must cope with:

* registering a participant issues a KPJ number, exactly once per idempotency key: the same key
  again answers the stored result with ``replayed: true`` and registers nothing new;
* the population registry (Dukcapil) does not know some NIKs (422 ``NIK_NOT_FOUND``), and BPJS
  already covers some people (409 ``ALREADY_REGISTERED`` with their KPJ), chosen by
  configuration (see ``bpjs_sim.sim_config``);
* coverage can be extended for a new period and ended;
* faults (503, timeouts, 429 with Retry-After, latency) can be injected, and switched at runtime.

``GET /v1/registrations/counts`` shows how often each person was registered, keyed by a hash
of the NIK, so tests can prove exactly-once registration. State is in memory, one object behind
one ``asyncio.Lock``: every check-then-act runs under it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, Field, model_validator

from bpjs_sim.sim_config import FaultKnobs, SimConfig

WIB = dt.timezone(dt.timedelta(hours=7), "WIB")
ISSUED_KPJ_PREFIX = "25"  # KPJ numbers this simulator issues: prefix + 9-digit counter
PREEXISTING_KPJ_PREFIX = "19"  # KPJ numbers of people covered before the simulator started

Answer = tuple[int, dict[str, Any]]


def today_wib() -> dt.date:
    """BPJS's calendar day: Western Indonesian Time (UTC+7)."""
    return dt.datetime.now(WIB).date()


def person_ref(nik: str) -> str:
    """How a person appears outside the simulator: never the NIK itself."""
    return hashlib.sha256(nik.encode()).hexdigest()[:16]


def preexisting_kpj(nik: str) -> str:
    """The stable KPJ of a person BPJS covered before this simulator started."""
    digest = int(hashlib.sha256(f"kpj:{nik}".encode()).hexdigest(), 16)
    return f"{PREEXISTING_KPJ_PREFIX}{digest % 10**9:09d}"


class SimError(Exception):
    """An error answer: ``{code, message, **extra}`` with the given status and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: str,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, str] = {"code": code, "message": message, **extra}
        self.headers = headers


# --- Request bodies -----------------------------------------------------------------------


def _iso_date(value: object) -> object:
    if isinstance(value, dt.date) or (
        isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)
    ):
        return value
    raise ValueError("must be a date as YYYY-MM-DD")


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
Key = Annotated[str, Field(min_length=1, max_length=200)]


class RegistrationBody(BaseModel):
    idempotency_key: Key
    nik: Annotated[str, Field(pattern=r"^\d{16}$")]
    full_name: Annotated[str, Field(min_length=1, max_length=200)]
    birth_date: IsoDate
    gender: Literal["L", "P"]
    category: Annotated[str, Field(min_length=1)]
    village_code: Annotated[str, Field(min_length=1)]
    period_start: IsoDate
    period_end: IsoDate

    @model_validator(mode="after")
    def _period_in_order(self) -> RegistrationBody:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self


class ExtensionBody(BaseModel):
    idempotency_key: Key
    period_start: IsoDate
    period_end: IsoDate

    @model_validator(mode="after")
    def _period_in_order(self) -> ExtensionBody:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self


class TerminationBody(BaseModel):
    idempotency_key: Key
    effective_date: IsoDate
    reason: str


# --- State --------------------------------------------------------------------------------


@dataclass
class Participant:
    kpj_number: str
    person_ref: str
    periods: list[tuple[dt.date, dt.date]] = field(default_factory=list)
    terminated_on: dt.date | None = None

    def covers_any_day_of(self, start: dt.date, end: dt.date) -> bool:
        for first, last in self.periods:
            if self.terminated_on is not None:
                last = min(last, self.terminated_on)
            if first <= end and start <= last:
                return True
        return False


@dataclass(frozen=True)
class Stored:
    """The answer given to an idempotency key, and what the key was used for (NIK or KPJ)."""

    subject: str
    body: dict[str, Any]


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.lock = asyncio.Lock()
        self._clear()

    def _clear(self) -> None:
        self.faults: FaultKnobs = self.config.fault_knobs()
        self.rng = random.Random(self.faults.seed)
        self.injected: Counter[str] = Counter({"503": 0, "timeout": 0, "429": 0})
        self.issued = 0
        self.participants: dict[str, Participant] = {}  # by KPJ
        self.kpj_by_nik: dict[str, str] = {}
        self.answers: dict[tuple[str, str], Stored] = {}  # by (operation, idempotency key)
        self.registrations: Counter[str] = Counter()  # by person_ref
        self.extensions: Counter[str] = Counter()  # by person_ref

    async def reset(self) -> None:
        async with self.lock:
            self._clear()

    # --- participants ---------------------------------------------------------------------

    async def register(self, body: RegistrationBody) -> Answer:
        async with self.lock:
            replay = self._replay("register", body.idempotency_key, body.nik, "NIK")
            if replay is not None:
                return replay
            coverage_start = max(body.period_start, today_wib())
            if coverage_start > body.period_end:
                raise SimError(400, "INVALID", "the period has already ended")
            self._check_registry(body.nik)
            participant = self.participants.get(self.kpj_by_nik.get(body.nik, ""))
            if participant is not None and participant.covers_any_day_of(
                coverage_start, body.period_end
            ):
                raise _already_registered(participant.kpj_number)
            if participant is None:
                self.issued += 1
                participant = Participant(
                    f"{ISSUED_KPJ_PREFIX}{self.issued:09d}", person_ref(body.nik)
                )
                self.participants[participant.kpj_number] = participant
                self.kpj_by_nik[body.nik] = participant.kpj_number
            participant.periods.append((coverage_start, body.period_end))
            self.registrations[participant.person_ref] += 1
            answer = {
                "kpj_number": participant.kpj_number,
                "coverage_start": coverage_start.isoformat(),
                "coverage_end": body.period_end.isoformat(),
            }
            self.answers[("register", body.idempotency_key)] = Stored(body.nik, answer)
            return 201, {**answer, "replayed": False}

    async def extend(self, kpj_number: str, body: ExtensionBody) -> Answer:
        async with self.lock:
            replay = self._replay("extend", body.idempotency_key, kpj_number, "KPJ")
            if replay is not None:
                return replay
            participant = self._participant(kpj_number)
            if participant.terminated_on is not None:
                raise SimError(409, "TERMINATED", "the participant's coverage has ended")
            participant.periods.append((body.period_start, body.period_end))
            self.extensions[participant.person_ref] += 1
            answer = {
                "kpj_number": kpj_number,
                "coverage_start": body.period_start.isoformat(),
                "coverage_end": body.period_end.isoformat(),
            }
            self.answers[("extend", body.idempotency_key)] = Stored(kpj_number, answer)
            return 200, {**answer, "replayed": False}

    async def terminate(self, kpj_number: str, body: TerminationBody) -> Answer:
        async with self.lock:
            replay = self._replay("terminate", body.idempotency_key, kpj_number, "KPJ")
            if replay is not None:
                return replay
            participant = self._participant(kpj_number)
            participant.terminated_on = body.effective_date
            answer = {"kpj_number": kpj_number, "coverage_end": body.effective_date.isoformat()}
            self.answers[("terminate", body.idempotency_key)] = Stored(kpj_number, answer)
            return 200, {**answer, "replayed": False}

    def _replay(self, operation: str, key: str, subject: str, what: str) -> Answer | None:
        stored = self.answers.get((operation, key))
        if stored is None:
            return None
        if stored.subject != subject:
            raise SimError(
                422, "IDEMPOTENCY_KEY_REUSED", f"idempotency key already used for another {what}"
            )
        return 200, {**stored.body, "replayed": True}

    def _check_registry(self, nik: str) -> None:
        """Dukcapil must know the NIK; BPJS must not cover the person from before."""
        config = self.config
        if _listed(nik, config.unknown_niks, config.unknown_serial_prefix):
            raise SimError(422, "NIK_NOT_FOUND", "the population registry does not know this NIK")
        if _listed(nik, config.registered_niks, config.registered_serial_prefix):
            kpj_number = preexisting_kpj(nik)
            # Known from now on, so that its coverage can be extended or ended.
            self.participants.setdefault(kpj_number, Participant(kpj_number, person_ref(nik)))
            raise _already_registered(kpj_number)

    def _participant(self, kpj_number: str) -> Participant:
        participant = self.participants.get(kpj_number)
        if participant is None:
            raise SimError(404, "NOT_FOUND", "no participant with this KPJ number")
        return participant

    def counts(self) -> dict[str, Any]:
        return {
            "total": sum(self.registrations.values()),
            "people": len(self.registrations),
            "counts": dict(self.registrations),
            "max_per_person": max(self.registrations.values(), default=0),
            "extensions": dict(self.extensions),
        }

    # --- faults ---------------------------------------------------------------------------

    async def inject_faults(self) -> None:
        """Runs before each participant POST: latency, then maybe 503, timeout or 429."""
        knobs = self.faults
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        if self._draw(knobs.fault_rate):
            self.injected["503"] += 1
            raise SimError(503, "UNAVAILABLE", "BPJS is temporarily unavailable (injected)")
        if self._draw(knobs.timeout_rate):
            self.injected["timeout"] += 1
            await asyncio.sleep(knobs.timeout_s)
            raise SimError(504, "TIMEOUT", "BPJS timed out (injected)")
        if self._draw(knobs.throttle_rate):
            self.injected["429"] += 1
            raise SimError(
                429,
                "THROTTLED",
                "too many requests (injected)",
                headers={"Retry-After": f"{knobs.retry_after_s:g}"},
            )

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def set_faults(self, knobs: FaultKnobs) -> None:
        self.faults = knobs
        self.rng = random.Random(knobs.seed)

    def faults_view(self) -> dict[str, Any]:
        return {**self.faults.model_dump(), "injected": dict(self.injected)}


def _listed(nik: str, niks: frozenset[str], serial_prefix: str) -> bool:
    """Whether the NIK is listed, or its 4-digit serial starts with the (non-empty) prefix."""
    return nik in niks or bool(serial_prefix and nik[-4:].startswith(serial_prefix))


def _already_registered(kpj_number: str) -> SimError:
    return SimError(
        409, "ALREADY_REGISTERED", "BPJS already covers this person", kpj_number=kpj_number
    )


def create_app(config: SimConfig | None = None) -> FastAPI:
    """The simulator as an ASGI app; without ``config``, read from ``RENTAN_BPJS_SIM_*``."""
    sim = Simulator(config if config is not None else SimConfig())
    app = FastAPI(title="BPJS Ketenagakerjaan simulator")
    app.state.sim = sim
    faults = [Depends(sim.inject_faults)]

    @app.exception_handler(SimError)
    async def _sim_error(request: Request, exc: SimError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Location and reason only: the rejected input (perhaps a NIK) is not echoed back.
        problems = [
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        ]
        return JSONResponse({"code": "INVALID", "message": "; ".join(problems)}, status_code=400)

    @app.post("/v1/participants", dependencies=faults)
    async def register(body: RegistrationBody) -> JSONResponse:
        status, answer = await sim.register(body)
        return JSONResponse(answer, status_code=status)

    @app.post("/v1/participants/{kpj_number}/extensions", dependencies=faults)
    async def extend(kpj_number: str, body: ExtensionBody) -> JSONResponse:
        status, answer = await sim.extend(kpj_number, body)
        return JSONResponse(answer, status_code=status)

    @app.post("/v1/participants/{kpj_number}/termination", dependencies=faults)
    async def terminate(kpj_number: str, body: TerminationBody) -> JSONResponse:
        status, answer = await sim.terminate(kpj_number, body)
        return JSONResponse(answer, status_code=status)

    @app.get("/v1/registrations/counts")
    async def counts() -> dict[str, Any]:
        async with sim.lock:
            return sim.counts()

    @app.get("/v1/faults")
    async def get_faults() -> dict[str, Any]:
        return sim.faults_view()

    @app.put("/v1/faults")
    async def put_faults(knobs: FaultKnobs) -> dict[str, Any]:
        sim.set_faults(knobs)
        return sim.faults_view()

    @app.post("/v1/admin/reset", status_code=204)
    async def reset() -> Response:
        await sim.reset()
        return Response(status_code=204)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

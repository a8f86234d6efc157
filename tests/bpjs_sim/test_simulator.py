"""The BPJS simulator: its contract, exactly-once registration, fault injection, and the real
client (``activities.bpjs.HttpBpjsAdapter``) and the registration activity against it."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.bpjs import (
    AiohttpTransport,
    AlreadyRegistered,
    BpjsActivities,
    BpjsTransient,
    HttpBpjsAdapter,
    InvalidParticipant,
    NikUnknown,
)
from bpjs_sim.sim_config import SimConfig
from bpjs_sim.simulator import create_app, person_ref, today_wib
from domain.records import SYSTEM, Record, Snapshot
from workflows.messages import (
    CoverageEnd,
    ExtensionRequest,
    RegistrationRequest,
    RegistrationResult,
)

# Region 160301 (Muara Enim, Tanjung Agung), born 15 May 1985 (women: day + 40), serial.
NIK = "1603011505850001"
NIK_2 = "1603015505850002"
UNKNOWN_NIK = "1603011505859901"  # serial 99xx: Dukcapil does not know it
PREEXISTING_NIK = "1603011505859801"  # serial 98xx: BPJS covers the person already

TODAY = today_wib()
START = TODAY + dt.timedelta(days=30)
END = START + dt.timedelta(days=364)


@asynccontextmanager
async def simulator(config: SimConfig | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config or SimConfig())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client


def registration(nik: str = NIK, key: str = "key-1", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotency_key": key,
        "nik": nik,
        "full_name": "Siti Aminah",
        "birth_date": "1985-05-15",
        "gender": "L",
        "category": "perangkat_desa",
        "village_code": "1603012001",
        "period_start": START.isoformat(),
        "period_end": END.isoformat(),
    }
    return body | changes


async def counts(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/registrations/counts")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


async def test_registration_issues_a_kpj() -> None:
    async with simulator() as client:
        first = await client.post("/v1/participants", json=registration())
        second = await client.post("/v1/participants", json=registration(NIK_2, "key-2"))

    assert first.status_code == 201
    answer = first.json()
    assert answer == {
        "kpj_number": answer["kpj_number"],
        "coverage_start": START.isoformat(),
        "coverage_end": END.isoformat(),
        "replayed": False,
    }
    assert len(answer["kpj_number"]) == 11 and answer["kpj_number"].isdigit()
    assert second.status_code == 201
    assert int(second.json()["kpj_number"]) == int(answer["kpj_number"]) + 1


async def test_coverage_starts_today_in_wib_when_the_period_began_already() -> None:
    body = registration(period_start=(TODAY - dt.timedelta(days=10)).isoformat())
    async with simulator() as client:
        response = await client.post("/v1/participants", json=body)
    assert response.status_code == 201
    assert response.json()["coverage_start"] == TODAY.isoformat()


async def test_a_period_that_has_ended_is_refused() -> None:
    body = registration(
        period_start=(TODAY - dt.timedelta(days=30)).isoformat(),
        period_end=(TODAY - dt.timedelta(days=1)).isoformat(),
    )
    async with simulator() as client:
        response = await client.post("/v1/participants", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID"


async def test_replay_answers_the_same_kpj_and_registers_nothing_new() -> None:
    async with simulator() as client:
        first = await client.post("/v1/participants", json=registration())
        again = await client.post("/v1/participants", json=registration())
        tally = await counts(client)

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == {**first.json(), "replayed": True}
    assert tally["total"] == 1
    assert tally["people"] == 1
    assert tally["counts"] == {person_ref(NIK): 1}
    assert tally["max_per_person"] == 1


async def test_key_reused_for_another_nik_is_refused() -> None:
    async with simulator() as client:
        await client.post("/v1/participants", json=registration())
        response = await client.post("/v1/participants", json=registration(NIK_2))
        tally = await counts(client)
    assert response.status_code == 422
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert tally["total"] == 1


@pytest.mark.parametrize(
    ("nik", "config"),
    [
        (UNKNOWN_NIK, SimConfig()),
        (NIK, SimConfig(unknown_niks=frozenset({NIK}))),
    ],
    ids=["serial-prefix", "listed"],
)
async def test_unknown_nik_is_422_nik_not_found(nik: str, config: SimConfig) -> None:
    async with simulator(config) as client:
        response = await client.post("/v1/participants", json=registration(nik))
        tally = await counts(client)
    assert response.status_code == 422
    assert response.json()["code"] == "NIK_NOT_FOUND"
    assert nik not in response.text
    assert tally["total"] == 0


async def test_empty_serial_prefix_disables_the_rule() -> None:
    config = SimConfig(unknown_serial_prefix="", registered_serial_prefix="")
    async with simulator(config) as client:
        unknown = await client.post("/v1/participants", json=registration(UNKNOWN_NIK, "k1"))
        known = await client.post("/v1/participants", json=registration(PREEXISTING_NIK, "k2"))
    assert unknown.status_code == 201
    assert known.status_code == 201


@pytest.mark.parametrize(
    ("nik", "config"),
    [
        (PREEXISTING_NIK, SimConfig()),
        (NIK, SimConfig(registered_niks=frozenset({NIK}))),
    ],
    ids=["serial-prefix", "listed"],
)
async def test_preexisting_person_is_409_with_a_stable_kpj(nik: str, config: SimConfig) -> None:
    async with simulator(config) as client:
        first = await client.post("/v1/participants", json=registration(nik, "k1"))
        second = await client.post("/v1/participants", json=registration(nik, "k2"))
        tally = await counts(client)
    assert first.status_code == 409
    assert first.json()["code"] == "ALREADY_REGISTERED"
    kpj = first.json()["kpj_number"]
    assert len(kpj) == 11 and kpj.isdigit() and kpj.startswith("19")
    assert second.json()["kpj_number"] == kpj
    assert tally["total"] == 0


async def test_second_key_for_the_same_person_is_409_with_the_first_kpj() -> None:
    async with simulator() as client:
        first = await client.post("/v1/participants", json=registration(key="k1"))
        second = await client.post("/v1/participants", json=registration(key="k2"))
        tally = await counts(client)
    assert second.status_code == 409
    assert second.json()["code"] == "ALREADY_REGISTERED"
    assert second.json()["kpj_number"] == first.json()["kpj_number"]
    assert tally["counts"] == {person_ref(NIK): 1}


async def test_a_later_period_registers_again_under_the_same_kpj() -> None:
    later = {
        "period_start": (END + dt.timedelta(days=1)).isoformat(),
        "period_end": (END + dt.timedelta(days=365)).isoformat(),
    }
    async with simulator() as client:
        first = await client.post("/v1/participants", json=registration(key="k1"))
        second = await client.post("/v1/participants", json=registration(key="k2", **later))
        tally = await counts(client)
    assert second.status_code == 201
    assert second.json()["kpj_number"] == first.json()["kpj_number"]
    assert tally["counts"] == {person_ref(NIK): 2}
    assert tally["max_per_person"] == 2


async def test_twenty_concurrent_registrations_with_one_key_register_once() -> None:
    async with simulator(SimConfig(latency_ms=5)) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/participants", json=registration()) for _ in range(20))
        )
        tally = await counts(client)
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["kpj_number"] for r in responses}) == 1
    assert tally["total"] == 1


async def test_twenty_concurrent_keys_for_one_person_register_once() -> None:
    async with simulator() as client:
        responses = await asyncio.gather(
            *(client.post("/v1/participants", json=registration(key=f"k{i}")) for i in range(20))
        )
        tally = await counts(client)
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19
    assert len({r.json()["kpj_number"] for r in responses}) == 1
    assert tally["total"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {k: v for k, v in registration().items() if k != "full_name"},
        registration(birth_date="1985-02-30"),
        registration(period_start="01/06/2027"),
        registration(period_end=20271231),
        registration(nik="160301150585001"),
        registration(nik="16030115058500AB"),
        registration(gender="X"),
        registration(period_start=END.isoformat(), period_end=START.isoformat()),
    ],
    ids=[
        "missing",
        "bad-date",
        "not-iso",
        "number",
        "nik-15-digits",
        "nik-letters",
        "gender",
        "period-reversed",
    ],
)
async def test_malformed_body_is_400_invalid(body: dict[str, Any]) -> None:
    async with simulator() as client:
        response = await client.post("/v1/participants", json=body)
        tally = await counts(client)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID"
    assert response.json()["message"]
    assert tally["total"] == 0


async def test_invalid_json_is_400_invalid() -> None:
    async with simulator() as client:
        response = await client.post(
            "/v1/participants", content=b"{", headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID"


async def test_fault_rate_one_answers_503_and_registers_nothing() -> None:
    async with simulator(SimConfig(fault_rate=1.0)) as client:
        response = await client.post("/v1/participants", json=registration())
        tally = await counts(client)
        health = await client.get("/healthz")
        faults = (await client.get("/v1/faults")).json()
    assert response.status_code == 503
    assert tally["total"] == 0
    assert health.json() == {"status": "ok"}
    assert faults["fault_rate"] == 1.0
    assert faults["injected"] == {"503": 1, "timeout": 0, "429": 0}


async def test_throttle_answers_429_with_retry_after() -> None:
    async with simulator(SimConfig(throttle_rate=1.0, retry_after_s=2)) as client:
        response = await client.post("/v1/participants", json=registration())
        tally = await counts(client)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert tally["total"] == 0


async def test_timeout_answers_504_after_waiting() -> None:
    async with simulator(SimConfig(timeout_rate=1.0, timeout_s=0.01)) as client:
        response = await client.post("/v1/participants", json=registration())
        faults = (await client.get("/v1/faults")).json()
    assert response.status_code == 504
    assert faults["injected"]["timeout"] == 1


async def test_faults_switch_on_and_off_at_runtime_and_are_reproducible() -> None:
    async with simulator() as client:
        on = await client.put("/v1/faults", json={"fault_rate": 0.5, "seed": 7})
        first = [
            (await client.post("/v1/participants", json=registration(key=f"a{i}"))).status_code
            for i in range(10)
        ]
        await client.post("/v1/admin/reset")
        await client.put("/v1/faults", json={"fault_rate": 0.5, "seed": 7})
        second = [
            (await client.post("/v1/participants", json=registration(key=f"a{i}"))).status_code
            for i in range(10)
        ]
        off = await client.put("/v1/faults", json={})
        ok = await client.post("/v1/participants", json=registration(NIK_2, "b"))
        bad = await client.put("/v1/faults", json={"fault_rate": 2})
    assert on.json()["fault_rate"] == 0.5
    assert first == second
    assert 503 in first
    assert off.json()["fault_rate"] == 0.0
    assert ok.status_code == 201
    assert bad.status_code == 400


async def test_extension_and_termination() -> None:
    next_start = END + dt.timedelta(days=1)
    next_end = next_start + dt.timedelta(days=364)
    extension = {
        "idempotency_key": "ext-1",
        "period_start": next_start.isoformat(),
        "period_end": next_end.isoformat(),
    }
    termination = {
        "idempotency_key": "end-1",
        "effective_date": (START + dt.timedelta(days=100)).isoformat(),
        "reason": "death",
    }
    async with simulator() as client:
        kpj = (await client.post("/v1/participants", json=registration())).json()["kpj_number"]
        extended = await client.post(f"/v1/participants/{kpj}/extensions", json=extension)
        replayed = await client.post(f"/v1/participants/{kpj}/extensions", json=extension)
        unknown = await client.post(
            "/v1/participants/25999999999/extensions", json=extension | {"idempotency_key": "x"}
        )
        ended = await client.post(f"/v1/participants/{kpj}/termination", json=termination)
        ended_again = await client.post(f"/v1/participants/{kpj}/termination", json=termination)
        unknown_end = await client.post(
            "/v1/participants/25999999999/termination", json=termination | {"idempotency_key": "y"}
        )
        tally = await counts(client)

    assert extended.status_code == 200
    assert extended.json() == {
        "kpj_number": kpj,
        "coverage_start": next_start.isoformat(),
        "coverage_end": next_end.isoformat(),
        "replayed": False,
    }
    assert replayed.json() == {**extended.json(), "replayed": True}
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "NOT_FOUND"
    assert ended.status_code == 200
    assert ended.json()["kpj_number"] == kpj
    assert ended.json()["coverage_end"] == termination["effective_date"]
    assert ended_again.status_code == 200
    assert ended_again.json()["coverage_end"] == termination["effective_date"]
    assert unknown_end.status_code == 404
    assert tally["total"] == 1
    assert tally["extensions"] == {person_ref(NIK): 1}


async def test_counts_never_contain_the_nik() -> None:
    async with simulator() as client:
        for i, nik in enumerate((NIK, NIK_2)):
            await client.post("/v1/participants", json=registration(nik, f"k{i}"))
        response = await client.get("/v1/registrations/counts")
    assert response.json()["people"] == 2
    assert NIK not in response.text and NIK_2 not in response.text
    assert set(response.json()["counts"]) == {person_ref(NIK), person_ref(NIK_2)}


async def test_reset_clears_everything() -> None:
    async with simulator() as client:
        await client.post("/v1/participants", json=registration())
        reset = await client.post("/v1/admin/reset")
        tally = await counts(client)
        again = await client.post("/v1/participants", json=registration())
    assert reset.status_code == 204
    assert tally == {"total": 0, "people": 0, "counts": {}, "max_per_person": 0, "extensions": {}}
    assert again.status_code == 201
    assert again.json()["replayed"] is False


def test_default_config_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENTAN_BPJS_SIM_UNKNOWN_NIKS", f"{NIK}, {NIK_2}")
    monkeypatch.setenv("RENTAN_BPJS_SIM_REGISTERED_SERIAL_PREFIX", "")
    monkeypatch.setenv("RENTAN_BPJS_SIM_FAULT_RATE", "0.25")
    config = SimConfig()
    assert config.unknown_niks == {NIK, NIK_2}
    assert config.registered_serial_prefix == ""
    assert config.fault_rate == 0.25
    create_app()  # the CLI's call


# --- The real client ----------------------------------------------------------------------


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """The app behind uvicorn on a free port of 127.0.0.1, in this event loop: its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the simulator did not start"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def adapter(
    config: SimConfig | None = None, *, timeout_s: float = 10.0
) -> AsyncIterator[HttpBpjsAdapter]:
    """The worker's adapter as the worker builds it (aiohttp), against the simulator over TCP."""
    async with served(create_app(config or SimConfig())) as base_url:
        bpjs = HttpBpjsAdapter(base_url, timeout_s=timeout_s)
        try:
            yield bpjs
        finally:
            await bpjs.aclose()


def activation_draft(seq: int = 5) -> Record:
    """The activation's record as the workflow hands it over: no KPJ, no coverage yet."""
    at = dt.datetime.combine(TODAY, dt.time(9), tzinfo=dt.UTC)
    return Record(
        snapshot=Snapshot(
            enrollment_id="enr_sim",
            program_code="ME-SIM",
            workflow_id="enr_sim",
            run_id="run-1",
            run_started_at=at,
            seq=seq,
            state="active",
            person_key="pk-sim",
            nik_masked="160301********01",
            full_name="Siti Aminah",
            birth_date=dt.date(1985, 5, 15),
            gender="L",
            phone=None,
            village_code="16.03.01.2011",
            district_code="16.03.01",
            category="perangkat_desa",
            declared_income_idr=1_000_000,
            premium_idr=16_800,
            funding_source="APBD",
            kpj_number=None,
            coverage_start=None,
            coverage_end=None,
            nominated_by="op",
            nominated_at=at,
            updated_at=at,
        ),
        action="activated",
        actor=SYSTEM,
        state_before="registering",
    )


def request(nik: str = NIK, key: str = "key-1") -> RegistrationRequest:
    return RegistrationRequest(
        idempotency_key=key,
        nik=nik,
        full_name="Siti Aminah",
        birth_date=dt.date(1985, 5, 15),
        gender="L",
        category="perangkat_desa",
        village_code="1603012001",
        period_start=START,
        period_end=END,
        activation=activation_draft(),
    )


async def test_adapter_registers_extends_and_ends() -> None:
    async with adapter() as bpjs:
        result = await bpjs.register(request())
        replayed = await bpjs.register(request())
        next_start = END + dt.timedelta(days=1)
        extended = await bpjs.extend(
            ExtensionRequest("ext-1", result.kpj_number, next_start, next_start.replace(year=2099))
        )
        await bpjs.end(CoverageEnd("end-1", result.kpj_number, START, "moved"))
    assert isinstance(result, RegistrationResult)
    assert result.coverage_start == START and result.coverage_end == END
    assert replayed == result
    assert extended.kpj_number == result.kpj_number
    assert extended.coverage_start == next_start


async def test_adapter_maps_permanent_errors() -> None:
    async with adapter() as bpjs:
        with pytest.raises(NikUnknown):
            await bpjs.register(request(UNKNOWN_NIK))
        with pytest.raises(AlreadyRegistered) as preexisting:
            await bpjs.register(request(PREEXISTING_NIK))
        first = await bpjs.register(request(NIK, "k1"))
        with pytest.raises(AlreadyRegistered) as again:
            await bpjs.register(request(NIK, "k2"))
        with pytest.raises(InvalidParticipant):
            await bpjs.extend(ExtensionRequest("e", "25999999999", START, END))
    assert preexisting.value.kpj_number is not None
    assert preexisting.value.kpj_number.startswith("19")
    assert again.value.kpj_number == first.kpj_number


async def test_adapter_maps_503_and_429_to_transient() -> None:
    async with adapter(SimConfig(fault_rate=1.0)) as bpjs:
        with pytest.raises(BpjsTransient):
            await bpjs.register(request())
    async with adapter(SimConfig(throttle_rate=1.0, retry_after_s=3)) as bpjs:
        with pytest.raises(BpjsTransient) as throttled:
            await bpjs.register(request())
    assert throttled.value.retry_after_s == 3.0


async def test_adapter_maps_a_slow_answer_to_a_transient_timeout() -> None:
    async with adapter(SimConfig(latency_ms=600), timeout_s=0.1) as bpjs:
        with pytest.raises(BpjsTransient, match="timed out"):
            await bpjs.register(request())


async def test_adapter_maps_no_listener_to_transient_unreachable() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    bpjs = HttpBpjsAdapter(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(BpjsTransient, match="unreachable"):
            await bpjs.register(request())
    finally:
        await bpjs.aclose()


async def test_adapter_keeps_its_connections_across_requests() -> None:
    """Keep-alive: one request after another reuse one connection instead of opening each."""
    async with adapter() as bpjs:
        for nik, key in ((NIK, "k1"), (NIK_2, "k2"), (NIK, "k1")):  # the last replays the first
            await bpjs.register(request(nik, key))
        transport = bpjs._transport
        assert isinstance(transport, AiohttpTransport) and transport._session is not None
        connector = transport._session.connector
        assert connector is not None
        assert len(connector._conns) == 1  # one idle keep-alive connection, reused


# --- The registration activity ------------------------------------------------------------


async def test_registration_activity_writes_the_activation_with_the_kpj_and_coverage() -> None:
    written: list[list[Record]] = []

    async def write(records: Sequence[Record]) -> None:
        written.append(list(records))

    env = ActivityEnvironment()
    async with adapter() as bpjs:
        activities = BpjsActivities(bpjs, write=write)
        result = await env.run(activities.register_participant, request())
        # A retry registers under the same key: the same KPJ, the same record (a no-op write).
        again = await env.run(activities.register_participant, request())

    (first,), (second,) = written
    snapshot = first.snapshot
    assert (snapshot.kpj_number, snapshot.coverage_start, snapshot.coverage_end) == (
        result.kpj_number,
        START,
        END,
    )
    # Stamped with the server's time (when the attempt was scheduled), as every other step,
    # and answered so that the workflow keeps the very record written.
    assert snapshot.updated_at == env.info.current_attempt_scheduled_time
    assert result.activation_written_at == snapshot.updated_at
    assert first.key == activation_draft().key
    assert second == first
    assert again == result


@pytest.mark.parametrize(
    ("nik", "config", "kind"),
    [
        (UNKNOWN_NIK, SimConfig(), "NikUnknown"),
        (PREEXISTING_NIK, SimConfig(), "AlreadyRegistered"),
    ],
    ids=["nik-unknown", "already-registered"],
)
async def test_registration_activity_refused_for_good_writes_nothing(
    nik: str, config: SimConfig, kind: str
) -> None:
    written: list[Sequence[Record]] = []

    async def write(records: Sequence[Record]) -> None:
        written.append(records)

    async with adapter(config) as bpjs:
        activities = BpjsActivities(bpjs, write=write)
        with pytest.raises(ApplicationError) as refused:
            await ActivityEnvironment().run(activities.register_participant, request(nik))
    assert refused.value.type == kind
    assert refused.value.non_retryable
    if kind == "AlreadyRegistered":  # the KPJ BPJS already holds travels with the refusal
        assert str(refused.value.details[0]).startswith("19")
    assert written == []


async def test_registration_activity_throttled_retries_after_bpjs_retry_after() -> None:
    async def write(records: Sequence[Record]) -> None:
        raise AssertionError("nothing to write")

    async with adapter(SimConfig(throttle_rate=1.0, retry_after_s=3)) as bpjs:
        activities = BpjsActivities(bpjs, write=write)
        with pytest.raises(ApplicationError) as throttled:
            await ActivityEnvironment().run(activities.register_participant, request())
    assert throttled.value.type == "BpjsTransient"
    assert not throttled.value.non_retryable
    assert throttled.value.next_retry_delay == dt.timedelta(seconds=3)

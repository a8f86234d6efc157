"""Reading: enrollment lists (filters, cursor pages, a village operator's own village only),
detail, history, the audit log, the coverage report and the coverage lookup by NIK.

The session's rig is shared: every test works in its own programs, with people (NIKs) no other
test uses, and reads the audit log from where it stood when the test began.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.state import AppState
from domain.premium import period_premium
from models.db import make_engine
from models.tables import AuditEvent
from services.keys import Role, create_key
from tests.api.conftest import Api
from tests.api.test_auth_and_roles import assert_problem
from tests.conftest import test_settings
from tests.harness import (
    OTHER_VILLAGE,
    VILLAGE,
    Rig,
    commitments_of,
    make_program,
    make_sim,
    nik,
    running_worker,
    server_today,
    stop_program,
    wait_for_state,
)

ELSEWHERE = "16.03.02.2001"  # Tanjung Raja, a desa in the Muara Enim district
BORN = dt.date(1977, 11, 9)  # this file's people: their NIKs are nobody else's
_serials = itertools.count(1)
_unknown_serials = itertools.count(9901)  # "99..": unknown to the population registry


# --- helpers ------------------------------------------------------------------------------------


def person(*, unknown_to_registry: bool = False, **overrides: str) -> dict[str, str]:
    """A worker row for someone no other test nominates; ``unknown_to_registry``: the BPJS
    simulator answers their registration with a permanent NIK_NOT_FOUND."""
    serial = next(_unknown_serials if unknown_to_registry else _serials)
    row = {
        "nik": nik(BORN.day, BORN.month, BORN.year, serial),
        "full_name": f"Warga Catatan {serial}",
        "birth_date": BORN.isoformat(),
        "gender": "L",
        "category": "perangkat_desa",
    }
    row.update(overrides)
    return row


def premium(api: Api) -> int:
    """The premium of a 1,000,000 declared income over the fixture program's period."""
    return period_premium(1_000_000, api.program.period_start, api.program.period_end)


async def nominate(
    api: Api,
    *rows: dict[str, str],
    village: str = VILLAGE,
    who: str = "village_operator",
    program: str | None = None,
) -> list[str]:
    answer = await api.http.post(
        f"/v1/programs/{program or api.program.code}/nominations",
        json={"village_code": village, "workers": list(rows)},
        headers=api.auth(who),
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["rejected"] == [], result["rejected"]
    return [a["enrollment_id"] for a in result["accepted"]]


async def detail(api: Api, enrollment_id: str, who: str = "auditor") -> dict[str, Any]:
    answer = await api.http.get(f"/v1/enrollments/{enrollment_id}", headers=api.auth(who))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def verify(api: Api, *ids: str) -> None:
    answer = await api.http.post(
        f"/v1/programs/{api.program.code}/verifications",
        json={"enrollment_ids": list(ids), "approve": True, "reason": "matches DPMD roster"},
        headers=api.auth("dpmd_verifier"),
    )
    assert answer.status_code == 200, answer.text
    assert all(r["ok"] for r in answer.json()["results"]), answer.json()


async def approve(api: Api, *ids: str) -> None:
    answer = await api.http.post(
        f"/v1/programs/{api.program.code}/budget-approvals",
        json={"funding_source": "APBD", "enrollment_ids": list(ids)},
        headers=api.auth("budget_officer"),
    )
    assert answer.status_code == 200, answer.text
    assert all(r["ok"] for r in answer.json()["results"]), answer.json()


async def settled(api: Api, enrollment_id: str, *states: str) -> dict[str, Any]:
    """Skip time until the workflow is in one of ``states``; the read shows it at once."""
    await wait_for_state(api.env, enrollment_id, *states)
    seen = await detail(api, enrollment_id)
    assert seen["state"] in states, seen
    return seen


async def activate(api: Api, *rows: dict[str, str]) -> list[str]:
    ids = await nominate(api, *rows)
    await verify(api, *ids)
    await approve(api, *ids)
    for enrollment_id in ids:
        await settled(api, enrollment_id, "active")
    return ids


async def listing(api: Api, who: str = "auditor", **params: Any) -> dict[str, Any]:
    answer = await api.http.get("/v1/enrollments", params=params, headers=api.auth(who))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def ids_of(page: dict[str, Any]) -> list[str]:
    return [e["id"] for e in page["items"]]


async def apbd(api: Api) -> dict[str, Any]:
    """The fixture program's APBD source as GET /v1/programs/{code} shows it."""
    answer = await api.http.get(
        f"/v1/programs/{api.program.code}", headers=api.auth("budget_officer")
    )
    assert answer.status_code == 200, answer.text
    (found,) = [s for s in answer.json()["funding_sources"] if s["code"] == "APBD"]
    return dict(found)


def last_audit_id(api: Api) -> int:
    """Where the audit log stands: a test reads what it wrote from there (``cursor``)."""
    with Session(api.engine) as session:
        last = session.exec(select(func.max(AuditEvent.id))).one()
    return last or 0


def audit_count(api: Api) -> int:
    with Session(api.engine) as session:
        return int(session.exec(select(func.count(col(AuditEvent.id)))).one())


@pytest.fixture
async def second_program(api: Api) -> AsyncIterator[str]:
    """Another program over the same period (created by an admin over HTTP), with only a
    ``bpd`` source; its workflows are terminated when the test ends."""
    code = f"{api.program.code}-B"
    body = {
        "code": code,
        "name": "Another program",
        "period_start": api.program.period_start.isoformat(),
        "period_end": api.program.period_end.isoformat(),
        "funding_sources": [
            {"code": "APBD", "name": "APBD", "ceiling_idr": 1_000_000, "categories": ["bpd"]}
        ],
    }
    created = await api.http.post("/v1/programs", json=body, headers=api.auth("admin"))
    assert created.status_code == 201, created.text
    yield code
    await stop_program(api.rig, code)


async def five_enrollments(api: Api, second: str) -> dict[str, str]:
    """Three in VILLAGE, one in OTHER_VILLAGE (the fixture program), one in another district
    (the second program); the perangkat one verified."""
    linmas, perangkat, sawit = await nominate(
        api, person(category="linmas"), person(), person(category="petani_sawit")
    )
    (other,) = await nominate(api, person(), village=OTHER_VILLAGE, who="other_village_operator")
    api.keys["elsewhere"] = create_key(
        api.engine, role=Role.VILLAGE_OPERATOR, name="op-tanjung-raja", village_code=ELSEWHERE
    )
    (elsewhere,) = await nominate(
        api, person(category="bpd"), village=ELSEWHERE, who="elsewhere", program=second
    )
    await verify(api, perangkat)
    return {
        "linmas": linmas,
        "perangkat": perangkat,
        "sawit": sawit,
        "other": other,
        "elsewhere": elsewhere,
    }


# --- lists and detail ---------------------------------------------------------------------------


async def test_list_enrollments_filters(api: Api, second_program: str) -> None:
    e = await five_enrollments(api, second_program)
    mine = {e["linmas"], e["perangkat"], e["sawit"], e["other"]}
    first = ids_of(await listing(api, program=api.program.code))
    assert sorted(first) == first  # id order
    assert set(first) == mine
    assert ids_of(await listing(api, program=second_program)) == [e["elsewhere"]]
    assert ids_of(await listing(api, program=f"NONE-{uuid.uuid4().hex[:8]}")) == []
    # Each filter within each of this test's programs (other tests' enrollments share the
    # database): what both programs show together.
    cases: list[tuple[dict[str, str], set[str]]] = [
        ({}, set(e.values())),
        ({"state": "verified"}, {e["perangkat"]}),
        ({"state": "nominated", "village_code": VILLAGE}, {e["linmas"], e["sawit"]}),
        ({"village_code": OTHER_VILLAGE}, {e["other"]}),
        ({"district_code": "16.03.01"}, mine),
        ({"district_code": "16.03.02"}, {e["elsewhere"]}),
        ({"category": "petani_sawit"}, {e["sawit"]}),
        ({"category": "perangkat_desa", "village_code": OTHER_VILLAGE}, {e["other"]}),
        ({"category": "bpd"}, {e["elsewhere"]}),
        ({"state": "rejected"}, set()),
    ]
    for who in ("auditor", "dpmd_verifier", "budget_officer"):
        for params, expected in cases:
            seen: set[str] = set()
            for code in (api.program.code, second_program):
                seen |= set(ids_of(await listing(api, who, program=code, limit=500, **params)))
            assert seen == expected, (who, params)
    for params in ({"state": "happy"}, {"category": "lurah"}, {"limit": "0"}, {"limit": "501"}):
        answer = await api.http.get("/v1/enrollments", params=params, headers=api.auth("auditor"))
        problem = assert_problem(answer, 422, str(params))
        assert [e["field"] for e in problem["errors"]] == list(params)


async def test_list_enrollments_by_village_operator_shows_only_its_village(
    api: Api, second_program: str
) -> None:
    e = await five_enrollments(api, second_program)
    mine = {e["linmas"], e["perangkat"], e["sawit"]}
    program = api.program.code

    async def seen(who: str, **params: str) -> set[str]:
        return set(ids_of(await listing(api, who, limit=500, **params)))

    assert await seen("village_operator", program=program) == mine
    assert await seen("village_operator", program=program, village_code=VILLAGE) == mine
    assert await seen("village_operator", program=program, district_code="16.03.01") == mine
    # Another village or district is never shown, in any program.
    assert await seen("village_operator", village_code=OTHER_VILLAGE) == set()
    assert await seen("village_operator", district_code="16.03.02") == set()
    assert await seen("other_village_operator", program=program) == {e["other"]}
    assert await seen("elsewhere", program=second_program) == {e["elsewhere"]}
    for enrollment_id in mine:
        answer = await api.http.get(
            f"/v1/enrollments/{enrollment_id}", headers=api.auth("other_village_operator")
        )
        assert_problem(answer, 404, "another village's detail")


async def test_list_enrollments_cursor_pages_cover_everything_once(api: Api) -> None:
    ours = await nominate(api, *(person() for _ in range(4)))
    ours += await nominate(api, person(), village=OTHER_VILLAGE, who="other_village_operator")
    program = api.program.code
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "program": program}
        if cursor is not None:
            params["cursor"] = cursor
        page = await listing(api, **params)
        pages += 1
        seen += ids_of(page)
        assert len(page["items"]) <= 2
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == 2
    assert pages == 3
    assert seen == sorted(ours)
    # Exactly a page's worth: no empty extra page.
    four = await listing(api, limit=4, program=program)
    assert len(four["items"]) == 4 and four["next_cursor"] is not None
    rest = await listing(api, limit=4, program=program, cursor=four["next_cursor"])
    assert (len(rest["items"]), rest["next_cursor"]) == (1, None)
    five = await listing(api, limit=5, program=program)
    assert (len(five["items"]), five["next_cursor"]) == (5, None)
    # Filters and cursors together.
    first = await listing(api, limit=1, program=program, village_code=VILLAGE)
    second = await listing(
        api, limit=10, program=program, village_code=VILLAGE, cursor=first["next_cursor"]
    )
    assert sorted(ids_of(first) + ids_of(second)) == sorted(ours[:4])
    for cursor in ("%%%", "not base64!", "////"):
        answer = await api.http.get(
            "/v1/enrollments", params={"cursor": cursor}, headers=api.auth("auditor")
        )
        assert answer.status_code in (200, 422), answer.text
        if answer.status_code == 422:
            assert_problem(answer, 422, cursor)


async def test_get_enrollment_shows_every_field(api: Api) -> None:
    row = person(category="linmas")
    (enrollment_id,) = await activate(api, row)
    seen = await detail(api, enrollment_id)
    assert set(seen) == {
        "id",
        "attention",
        "program",
        "village_code",
        "district_code",
        "category",
        "full_name",
        "nik_masked",
        "state",
        "kpj_number",
        "coverage_start",
        "coverage_end",
        "premium_idr",
        "funding_source",
        "updated_at",
    }
    number = row["nik"]
    assert seen["id"] == enrollment_id
    assert (seen["program"], seen["village_code"], seen["district_code"]) == (
        api.program.code,
        VILLAGE,
        "16.03.01",
    )
    assert (seen["category"], seen["full_name"]) == ("linmas", row["full_name"])
    assert seen["nik_masked"] == f"{number[:6]}********{number[14:]}"
    assert (seen["state"], seen["premium_idr"], seen["funding_source"]) == (
        "active",
        premium(api),
        "APBD",
    )
    assert seen["kpj_number"] and seen["kpj_number"].isdigit()
    start = dt.date.fromisoformat(seen["coverage_start"])
    assert api.program.period_start <= start <= api.program.period_end
    assert seen["coverage_end"] == api.program.period_end.isoformat()
    assert dt.datetime.fromisoformat(seen["updated_at"])
    for who in ("village_operator", "dpmd_verifier", "budget_officer"):
        assert await detail(api, enrollment_id, who) == seen
    answer = await api.http.get(f"/v1/enrollments/{enrollment_id}", headers=api.auth("auditor"))
    assert number not in answer.text


# --- history ------------------------------------------------------------------------------------


async def history_of(api: Api, enrollment_id: str, who: str = "auditor") -> dict[str, Any]:
    answer = await api.http.get(f"/v1/enrollments/{enrollment_id}/history", headers=api.auth(who))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def current_run(api: Api, enrollment_id: str) -> str:
    run_id = (await api.env.client.get_workflow_handle(enrollment_id).describe()).run_id
    assert run_id
    return run_id


async def test_get_history_merges_the_audit_log_and_temporal(api: Api) -> None:
    row = person()
    (enrollment_id,) = await activate(api, row)
    answer = await api.http.get(
        f"/v1/enrollments/{enrollment_id}/history", headers=api.auth("auditor")
    )
    history = answer.json()
    assert await history_of(api, enrollment_id, "dpmd_verifier") == history
    assert (history["enrollment_id"], history["workflow_id"]) == (enrollment_id, enrollment_id)
    run_id = await current_run(api, enrollment_id)
    assert history["run_ids"] == [run_id]
    events = history["events"]
    audit = [e for e in events if e["source"] == "audit"]
    engine = [e for e in events if e["source"] == "temporal"]
    assert [e["action"] for e in audit] == [
        "nominated",
        "verified",
        "budget_approved",
        "registration_started",
        "activated",
    ]
    assert [(e["state_before"], e["state_after"]) for e in audit] == [
        (None, "nominated"),
        ("nominated", "verified"),
        ("verified", "budget_approved"),
        ("budget_approved", "registering"),
        ("registering", "active"),
    ]
    by_action = {e["action"]: e for e in audit}
    assert (by_action["nominated"]["actor"], by_action["nominated"]["role"]) == (
        "test-village_operator",
        "village_operator",
    )
    assert by_action["verified"]["actor"] == "test-dpmd_verifier"
    assert by_action["verified"]["reason"] == "matches DPMD roster"
    assert by_action["budget_approved"]["actor"] == "test-budget_officer"
    assert by_action["activated"]["role"] == "system"
    assert all(e["program"] == api.program.code for e in audit)
    assert {e["run_id"] for e in audit} == {run_id}
    engine_actions = [e["action"] for e in engine]
    assert engine_actions[0] == "workflow_started"
    assert "update_accepted:nominate" in engine_actions
    assert "update_accepted:verify" in engine_actions
    assert "update_accepted:approve_budget" in engine_actions
    assert "activity_scheduled:register_participant" in engine_actions
    verify_update = next(e for e in engine if e["action"] == "update_accepted:verify")
    assert (verify_update["actor"], verify_update["role"]) == (
        "test-dpmd_verifier",
        "dpmd_verifier",
    )
    assert {e["run_id"] for e in engine} == {run_id}
    times = [dt.datetime.fromisoformat(e["time"]) for e in events]
    assert times == sorted(times)
    assert row["nik"] not in answer.text
    for who in ("village_operator", "budget_officer", "admin"):
        answer = await api.http.get(
            f"/v1/enrollments/{enrollment_id}/history", headers=api.auth(who)
        )
        assert_problem(answer, 403, who)


@pytest.fixture
async def dev_server_api(
    dev_server_env: WorkflowEnvironment, tmp_path: Path, db_url: str
) -> AsyncIterator[Api]:
    """The API with a worker and a projection of its own on the dev server (a real Temporal
    server). The session's time-skipping test server answers a second start of a closed
    workflow id inside an update-with-start with a bare ALREADY_EXISTS (no
    WorkflowExecutionAlreadyStartedFailure detail), which the nomination batch does not take for
    "already started": a person nominated again is not reachable on it."""
    settings = test_settings(tmp_path, db_url)
    engine = make_engine(settings.resolved_database_url)
    start = (await server_today(dev_server_env)).replace(day=1)
    program = make_program(engine, code=f"T-{uuid.uuid4().hex[:10]}", start=start)
    keys = {
        role.value: create_key(
            engine,
            role=role,
            name=f"test-{role.value}",
            village_code=VILLAGE if role == Role.VILLAGE_OPERATOR else None,
        )
        for role in Role
    }
    sim = make_sim()
    rig = Rig(dev_server_env, engine, settings, sim)
    app = create_app(settings)
    async with (
        running_worker(dev_server_env.client, settings, engine, sim.adapter),
        app.router.lifespan_context(app),
    ):
        state: AppState = app.state.rentan
        state._client = dev_server_env.client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rentan") as http:
            yield Api(app, http, rig, program, keys)
        await stop_program(rig, program.code)
    engine.dispose()


async def test_get_history_lists_every_run_of_a_person_nominated_again(
    dev_server_api: Api,
) -> None:
    api = dev_server_api
    row = person()
    (enrollment_id,) = await nominate(api, row)
    first_run = await current_run(api, enrollment_id)
    answer = await api.http.post(
        f"/v1/enrollments/{enrollment_id}/withdrawal",
        json={"reason": "nominated by mistake"},
        headers=api.auth("village_operator"),
    )
    assert answer.json() == {"enrollment_id": enrollment_id, "state": "withdrawn"}, answer.text
    # Nominated again in the same period: the same enrollment, a new run of its workflow.
    assert await nominate(api, row) == [enrollment_id]
    second_run = await current_run(api, enrollment_id)
    assert second_run != first_run
    assert (await detail(api, enrollment_id))["state"] == "nominated"

    history = await history_of(api, enrollment_id)
    assert history["run_ids"] == [first_run, second_run]
    audit = [(e["action"], e["run_id"]) for e in history["events"] if e["source"] == "audit"]
    assert audit == [
        ("nominated", first_run),
        ("withdrawn", first_run),
        ("nominated", second_run),
    ]
    engine = [(e["action"], e["run_id"]) for e in history["events"] if e["source"] == "temporal"]
    for run_id in (first_run, second_run):
        assert ("workflow_started", run_id) in engine
        assert ("update_accepted:nominate", run_id) in engine
    assert ("update_accepted:withdraw", first_run) in engine
    assert ("workflow_completed", first_run) in engine
    assert ("workflow_completed", second_run) not in engine


# --- the audit log ------------------------------------------------------------------------------


async def test_list_audit_events_filters_and_pages(api: Api, second_program: str) -> None:
    start = last_audit_id(api)
    e = await five_enrollments(api, second_program)
    auditor = api.auth("auditor")

    async def events(**params: Any) -> dict[str, Any]:
        """The log from where it stood when the test began (other tests wrote before)."""
        params.setdefault("cursor", start)
        if params["cursor"] is None:  # the whole log
            del params["cursor"]
        answer = await api.http.get("/v1/audit/events", params=params, headers=auditor)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def items(**params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await events(**params))["items"]
        return found

    everything = await events()
    assert everything["next_cursor"] is None
    logged = everything["items"]
    assert [i["id"] for i in logged] == sorted(i["id"] for i in logged)
    assert [i["action"] for i in logged].count("nominated") == 5
    assert len(logged) == 6  # five nominations, one verification
    assert {i["enrollment_id"] for i in logged} == set(e.values())

    page = await events(limit=4)
    rest = await events(limit=4, cursor=page["next_cursor"])
    assert [i["id"] for i in page["items"] + rest["items"]] == [i["id"] for i in logged]
    assert rest["next_cursor"] is None

    (verified,) = await items(action="verified")
    assert (verified["enrollment_id"], verified["actor"], verified["role"]) == (
        e["perangkat"],
        "test-dpmd_verifier",
        "dpmd_verifier",
    )
    assert (verified["state_before"], verified["state_after"]) == ("nominated", "verified")
    assert verified["workflow_id"] == e["perangkat"] and verified["run_id"]
    assert [i["action"] for i in await items(enrollment_id=e["perangkat"])] == [
        "nominated",
        "verified",
    ]
    assert [i["action"] for i in await items(enrollment_id=e["perangkat"], cursor=None)] == [
        "nominated",
        "verified",
    ]
    assert {i["enrollment_id"] for i in await items(actor="test-other-village")} == {e["other"]}
    assert {i["enrollment_id"] for i in await items(actor="op-tanjung-raja")} == {e["elsewhere"]}
    # The log is in the order it was written; when each step happened is ``occurred_at``.
    first = min(dt.datetime.fromisoformat(i["occurred_at"]) for i in logged)
    last = max(dt.datetime.fromisoformat(i["occurred_at"]) for i in logged)
    assert len(await items(since=first.isoformat())) == 6
    assert await items(since=(last + dt.timedelta(seconds=1)).isoformat()) == []
    assert await items(until=first.isoformat()) == []
    assert await items(action="refused_verification") == []
    for params in ({"limit": 0}, {"cursor": -1}, {"since": "last week"}):
        answer = await api.http.get("/v1/audit/events", params=params, headers=auditor)
        assert_problem(answer, 422, str(params))

    chain = (await api.http.get("/v1/audit/verify", headers=auditor)).json()
    assert chain == {"ok": True, "checked": audit_count(api), "first_broken": None}


# --- the coverage report ------------------------------------------------------------------------


async def coverage_report(api: Api, group_by: str, who: str = "auditor") -> dict[str, Any]:
    answer = await api.http.get(
        "/v1/reports/coverage",
        params={"program": api.program.code, "group_by": group_by},
        headers=api.auth(who),
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert (body["program"], body["group_by"]) == (api.program.code, group_by)
    assert body["total_enrollments"] == sum(line["enrollments"] for line in body["lines"])
    assert body["total_premium_idr"] == sum(line["premium_idr"] for line in body["lines"])
    return body


def lines_of(body: dict[str, Any]) -> dict[str, tuple[str, int, int, int]]:
    return {
        line["key"]: (line["name"], line["enrollments"], line["active"], line["premium_idr"])
        for line in body["lines"]
    }


async def test_get_coverage_report_groups_and_totals(api: Api) -> None:
    await activate(api, person(), person(category="linmas"))
    await nominate(api, person(category="linmas"))
    other = await nominate(api, person(), village=OTHER_VILLAGE, who="other_village_operator")
    await verify(api, *other)
    paid = premium(api)

    for who in ("auditor", "dpmd_verifier", "budget_officer"):
        body = await coverage_report(api, "district", who)
        assert body["total_enrollments"] == 4
        assert body["total_premium_idr"] == 2 * paid  # only what is funded
        assert lines_of(body) == {"16.03.01": ("Tanjung Agung", 4, 2, 2 * paid)}
    assert lines_of(await coverage_report(api, "village")) == {
        VILLAGE: ("Embawang", 3, 2, 2 * paid),
        OTHER_VILLAGE: ("Pagar Dewa", 1, 0, 0),
    }
    assert lines_of(await coverage_report(api, "category")) == {
        "linmas": ("linmas", 2, 1, paid),
        "perangkat_desa": ("perangkat_desa", 2, 1, paid),
    }
    assert lines_of(await coverage_report(api, "state")) == {
        "active": ("active", 2, 2, 2 * paid),
        "nominated": ("nominated", 1, 0, 0),
        "verified": ("verified", 1, 0, 0),
    }
    default = await api.http.get(
        "/v1/reports/coverage", params={"program": api.program.code}, headers=api.auth("auditor")
    )
    assert default.json()["group_by"] == "district"
    bad = await api.http.get(
        "/v1/reports/coverage",
        params={"program": api.program.code, "group_by": "province"},
        headers=api.auth("auditor"),
    )
    assert [e["field"] for e in assert_problem(bad, 422, "group_by")["errors"]] == ["group_by"]
    missing = await api.http.get("/v1/reports/coverage", headers=api.auth("auditor"))
    assert [e["field"] for e in assert_problem(missing, 422, "program")["errors"]] == ["program"]


async def test_get_coverage_report_counts_only_open_commitments(api: Api) -> None:
    """A failed registration keeps its budget (DPMD may resubmit) until it is withdrawn; the
    report and the program's committed amount count open commitments only."""
    paid = premium(api)
    active, failing = await nominate(api, person(), person(unknown_to_registry=True))
    await verify(api, active, failing)
    await approve(api, active, failing)
    await settled(api, active, "active")
    await settled(api, failing, "registration_failed")

    held = await coverage_report(api, "state")
    assert lines_of(held) == {
        "active": ("active", 1, 1, paid),
        "registration_failed": ("registration_failed", 1, 0, paid),
    }
    assert held["total_premium_idr"] == 2 * paid
    source = await apbd(api)
    assert (source["committed_idr"], source["remaining_idr"]) == (2 * paid, 10_000_000 - 2 * paid)

    answer = await api.http.post(
        f"/v1/enrollments/{failing}/withdrawal",
        json={"reason": "the NIK is wrong; nominated anew"},
        headers=api.auth("village_operator"),
    )
    assert answer.json() == {"enrollment_id": failing, "state": "withdrawn"}, answer.text

    # Read at once: the withdrawal gave the premium back.
    released = await coverage_report(api, "state")
    assert lines_of(released) == {
        "active": ("active", 1, 1, paid),
        "withdrawn": ("withdrawn", 1, 0, 0),
    }
    assert (released["total_enrollments"], released["total_premium_idr"]) == (2, paid)
    by_village = await coverage_report(api, "village")
    assert lines_of(by_village) == {VILLAGE: ("Embawang", 2, 1, paid)}
    source = await apbd(api)
    assert (source["committed_idr"], source["remaining_idr"]) == (paid, 10_000_000 - paid)
    ledger = {c.enrollment_id: c for c in commitments_of(api.engine, api.program.code)}
    assert set(ledger) == {active, failing}
    assert ledger[active].released_at is None
    assert ledger[failing].released_at is not None
    assert ledger[failing].amount_idr == paid


# --- coverage by NIK ----------------------------------------------------------------------------


async def test_get_coverage_by_nik_and_day(api: Api) -> None:
    covered, waiting, stranger = person(), person(), person()
    (enrollment_id,) = await activate(api, covered)
    await nominate(api, waiting)
    seen = await detail(api, enrollment_id)
    start = dt.date.fromisoformat(seen["coverage_start"])
    end = dt.date.fromisoformat(seen["coverage_end"])

    async def lookup(number: str, on: dt.date | str, who: str = "auditor") -> dict[str, Any]:
        answer = await api.http.post(
            "/v1/coverage", json={"nik": number, "on": str(on)}, headers=api.auth(who)
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    number = covered["nik"]
    for day in (start, end, start + (end - start) / 2):
        for who in ("auditor", "dpmd_verifier"):
            assert await lookup(number, day, who) == {
                "covered": True,
                "enrollment_id": enrollment_id,
                "kpj_number": seen["kpj_number"],
                "coverage_start": seen["coverage_start"],
                "coverage_end": seen["coverage_end"],
            }
    # Spaces and dots people type are ignored.
    spaced = f"{number[:6]} {number[6:12]}.{number[12:]}"
    assert (await lookup(spaced, start))["covered"] is True
    empty = {
        "covered": False,
        "enrollment_id": None,
        "kpj_number": None,
        "coverage_start": None,
        "coverage_end": None,
    }
    assert await lookup(number, start - dt.timedelta(days=1)) == empty
    assert await lookup(number, end + dt.timedelta(days=1)) == empty
    assert await lookup(waiting["nik"], start) == empty  # nominated, not covered
    assert await lookup(stranger["nik"], start) == empty  # never nominated
    for params in (
        {"nik": "12345", "on": str(start)},
        {"nik": "16030115058500AB", "on": str(start)},
        {"nik": number, "on": "15/05/2026"},
        {"nik": number},
        {"on": str(start)},
    ):
        answer = await api.http.post("/v1/coverage", json=params, headers=api.auth("auditor"))
        problem = assert_problem(answer, 422, str(params))
        assert problem["errors"] and all(
            e["field"].split(".")[-1] in ("nik", "on") for e in problem["errors"]
        ), problem
    # The NIK never travels in a URL: the old query form is gone.
    in_url = await api.http.get(
        "/v1/coverage", params={"nik": number, "on": str(start)}, headers=api.auth("auditor")
    )
    assert in_url.status_code == 405


async def test_every_coverage_lookup_is_audited_with_the_masked_nik(api: Api) -> None:
    covered = person()
    (enrollment_id,) = await activate(api, covered)
    start = (await detail(api, enrollment_id))["coverage_start"]
    for who in ("dpmd_verifier", "auditor"):
        answer = await api.http.post(
            "/v1/coverage", json={"nik": covered["nik"], "on": start}, headers=api.auth(who)
        )
        assert answer.json()["covered"] is True
    audit = await api.http.get(
        "/v1/audit/events", params={"action": "coverage_lookup"}, headers=api.auth("auditor")
    )
    mine = [e for e in audit.json()["items"] if e["enrollment_id"] == enrollment_id]
    masked = f"{covered['nik'][:6]}********{covered['nik'][14:]}"
    assert [(e["actor"], e["role"]) for e in mine] == [
        ("test-dpmd_verifier", "dpmd_verifier"),
        ("test-auditor", "auditor"),
    ]
    assert all(e["reason"] == f"coverage of {masked} on {start}" for e in mine)
    assert all(e["actor_id"].startswith("key:") for e in mine)
    assert covered["nik"] not in audit.text


# --- hostile input ------------------------------------------------------------------------------


async def test_read_or_step_with_nul_or_out_of_range_values_is_422_not_500(api: Api) -> None:
    """PostgreSQL cannot store or compare a NUL; a NUL that reached a workflow's write made it
    retry forever. Found by fuzzing: each of these was a 500 (or a hang) on PostgreSQL."""
    (enrollment_id,) = await nominate(api, person())
    auditor = api.auth("auditor")
    for url in (
        "/v1/enrollments?program=ME%00",
        "/v1/enrollments?cursor=AA==",  # base64 of a NUL
        "/v1/enrollments/enr%00x",
        "/v1/programs/ME%00",
        "/v1/audit/events?actor=%00",
        "/v1/audit/events?cursor=2508594772",  # beyond the 32-bit id column
        "/v1/audit/events?since=0001-01-01T00:00:00%2B14:00",  # before year 1 in UTC
    ):
        answer = await api.http.get(url, headers=auditor)
        assert_problem(answer, 422, url)
    bodies = [
        (
            "dpmd_verifier",
            f"/v1/enrollments/{enrollment_id}/verification",
            {"approve": True, "reason": "ok\u0000"},
            "reason",
        ),
        (
            "village_operator",
            f"/v1/enrollments/{enrollment_id}/withdrawal",
            {"reason": "\u0000"},
            "reason",
        ),
        (
            "dpmd_verifier",
            f"/v1/programs/{api.program.code}/verifications",
            {"enrollment_ids": ["enr\u0000"], "approve": True},
            "enrollment_ids",
        ),
        (
            "budget_officer",
            f"/v1/programs/{api.program.code}/budget-approvals",
            {"village_code": VILLAGE, "funding_source": "APBD\u0000"},
            "funding_source",
        ),
    ]
    for who, url, body, field in bodies:
        answer = await api.http.post(url, json=body, headers=api.auth(who))
        problem = assert_problem(answer, 422, f"{url} {field}")
        assert field in [e["field"] for e in problem["errors"]], problem
    # A time without an offset is taken as UTC (it used to fail inside the database layer).
    naive = await api.http.get(
        "/v1/audit/events",
        params={"since": "2000-01-01T00:00:00", "enrollment_id": enrollment_id},
        headers=auditor,
    )
    assert [e["action"] for e in naive.json()["items"]] == ["nominated"]
    assert (await detail(api, enrollment_id))["state"] == "nominated"

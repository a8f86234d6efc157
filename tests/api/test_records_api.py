"""Reading: enrollment lists (filters, cursor pages, a village operator's own village only),
detail, history, the audit log, the coverage report and the coverage lookup by NIK."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.keys import Role, create_key
from tests.api.conftest import Api
from tests.api.test_auth_and_roles import assert_problem, worker
from tests.api.test_steps_api import PREMIUM, activate, detail, nominate, step, verify
from tests.harness import OTHER_VILLAGE, VILLAGE, nik

ELSEWHERE = "16.03.02.2001"  # Tanjung Raja, a desa in the Muara Enim district


async def listing(api: Api, who: str = "auditor", **params: Any) -> dict[str, Any]:
    answer = await api.http.get("/v1/enrollments", params=params, headers=api.auth(who))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def ids_of(page: dict[str, Any]) -> list[str]:
    return [e["id"] for e in page["items"]]


async def five_enrollments(api: Api) -> dict[str, str]:
    """Three in VILLAGE, one in OTHER_VILLAGE, one in another district; two programs."""
    linmas, perangkat, sawit = await nominate(
        api, worker(1, category="linmas"), worker(2), worker(3, category="petani_sawit")
    )
    (other,) = await nominate(api, worker(4), village=OTHER_VILLAGE, who="other_village_operator")
    key = create_key(
        api.engine, role=Role.VILLAGE_OPERATOR, name="op-tanjung-raja", village_code=ELSEWHERE
    )
    api.keys["elsewhere"] = key
    second = {
        "code": "ME-LAIN",
        "name": "Another program",
        "period_start": api.program.period_start.isoformat(),
        "period_end": api.program.period_end.isoformat(),
        "funding_sources": [
            {"code": "APBD", "name": "APBD", "ceiling_idr": 1_000_000, "categories": ["bpd"]}
        ],
    }
    created = await api.http.post("/v1/programs", json=second, headers=api.auth("admin"))
    assert created.status_code == 201, created.text
    (elsewhere,) = await nominate(
        api, worker(5, category="bpd"), village=ELSEWHERE, who="elsewhere", program="ME-LAIN"
    )
    status, _ = await step(api, perangkat, "verification", {"approve": True}, "dpmd_verifier")
    assert status == 200
    return {
        "linmas": linmas,
        "perangkat": perangkat,
        "sawit": sawit,
        "other": other,
        "elsewhere": elsewhere,
    }


async def test_list_filters(api: Api) -> None:
    e = await five_enrollments(api)
    everyone = ids_of(await listing(api))
    assert sorted(everyone) == sorted(e.values())
    assert everyone == sorted(everyone)  # id order
    cases: list[tuple[dict[str, str], set[str]]] = [
        ({"program": api.program.code}, {e["linmas"], e["perangkat"], e["sawit"], e["other"]}),
        ({"program": "ME-LAIN"}, {e["elsewhere"]}),
        ({"program": "ME-NONE"}, set()),
        ({"state": "verified"}, {e["perangkat"]}),
        ({"state": "nominated", "village_code": VILLAGE}, {e["linmas"], e["sawit"]}),
        ({"village_code": OTHER_VILLAGE}, {e["other"]}),
        ({"district_code": "16.03.01"}, {e["linmas"], e["perangkat"], e["sawit"], e["other"]}),
        ({"district_code": "16.03.02"}, {e["elsewhere"]}),
        ({"category": "petani_sawit"}, {e["sawit"]}),
        ({"category": "perangkat_desa", "village_code": OTHER_VILLAGE}, {e["other"]}),
        ({"category": "bpd", "program": api.program.code}, set()),
    ]
    for who in ("auditor", "dpmd_verifier", "budget_officer"):
        for params, expected in cases:
            assert set(ids_of(await listing(api, who, **params))) == expected, (who, params)
    for params in ({"state": "happy"}, {"category": "lurah"}, {"limit": "0"}, {"limit": "501"}):
        answer = await api.http.get("/v1/enrollments", params=params, headers=api.auth("auditor"))
        problem = assert_problem(answer, 422, str(params))
        assert [e["field"] for e in problem["errors"]] == list(params)


async def test_village_operator_sees_only_its_village(api: Api) -> None:
    e = await five_enrollments(api)
    mine = {e["linmas"], e["perangkat"], e["sawit"]}
    assert set(ids_of(await listing(api, "village_operator"))) == mine
    assert ids_of(await listing(api, "village_operator", village_code=OTHER_VILLAGE)) == []
    assert ids_of(await listing(api, "village_operator", district_code="16.03.02")) == []
    assert set(ids_of(await listing(api, "village_operator", district_code="16.03.01"))) == mine
    assert set(ids_of(await listing(api, "village_operator", village_code=VILLAGE))) == mine
    assert ids_of(await listing(api, "other_village_operator")) == [e["other"]]
    assert ids_of(await listing(api, "elsewhere")) == [e["elsewhere"]]
    for enrollment_id in mine:
        answer = await api.http.get(
            f"/v1/enrollments/{enrollment_id}", headers=api.auth("other_village_operator")
        )
        assert_problem(answer, 404, "another village's detail")


async def test_cursor_pages_cover_everything_once(api: Api) -> None:
    e = await five_enrollments(api)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
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
    assert seen == sorted(e.values())
    assert len(set(seen)) == 5
    # Exactly a page's worth: no empty extra page.
    four = await listing(api, limit=4)
    assert len(four["items"]) == 4 and four["next_cursor"] is not None
    rest = await listing(api, limit=4, cursor=four["next_cursor"])
    assert (len(rest["items"]), rest["next_cursor"]) == (1, None)
    five = await listing(api, limit=5)
    assert (len(five["items"]), five["next_cursor"]) == (5, None)
    # Filters and cursors together.
    first = await listing(api, limit=1, district_code="16.03.01")
    second = await listing(api, limit=10, district_code="16.03.01", cursor=first["next_cursor"])
    assert len(ids_of(first) + ids_of(second)) == 4
    assert e["elsewhere"] not in ids_of(second)
    for cursor in ("%%%", "not base64!", "////"):
        answer = await api.http.get(
            "/v1/enrollments", params={"cursor": cursor}, headers=api.auth("auditor")
        )
        assert answer.status_code in (200, 422), answer.text
        if answer.status_code == 422:
            assert_problem(answer, 422, cursor)


async def test_detail_fields(api: Api) -> None:
    (enrollment_id,) = await activate(api, worker(10, category="linmas"))
    seen = await detail(api, enrollment_id)
    assert set(seen) == {
        "id",
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
    number = nik(15, 5, 1985, 10)
    assert seen["id"] == enrollment_id
    assert (seen["program"], seen["village_code"], seen["district_code"]) == (
        api.program.code,
        VILLAGE,
        "16.03.01",
    )
    assert (seen["category"], seen["full_name"]) == ("linmas", "Warga Uji 10")
    assert seen["nik_masked"] == f"{number[:6]}******{number[12:]}"
    assert (seen["state"], seen["premium_idr"], seen["funding_source"]) == (
        "active",
        PREMIUM,
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


async def test_history_merges_the_audit_log_and_temporal(api: Api) -> None:
    (enrollment_id,) = await activate(api, worker(20))
    for who in ("auditor", "dpmd_verifier"):
        answer = await api.http.get(
            f"/v1/enrollments/{enrollment_id}/history", headers=api.auth(who)
        )
        assert answer.status_code == 200, answer.text
    history = answer.json()
    assert (history["enrollment_id"], history["workflow_id"]) == (enrollment_id, enrollment_id)
    assert len(history["run_ids"]) == 1
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
    engine_actions = [e["action"] for e in engine]
    assert engine_actions[0] == "workflow_started"
    assert "update_accepted:verify" in engine_actions
    assert "update_accepted:approve_budget" in engine_actions
    assert any(a.startswith("activity_scheduled:register_participant") for a in engine_actions)
    verify_update = next(e for e in engine if e["action"] == "update_accepted:verify")
    assert (verify_update["actor"], verify_update["role"]) == (
        "test-dpmd_verifier",
        "dpmd_verifier",
    )
    assert {e["run_id"] for e in engine} == set(history["run_ids"])
    times = [dt.datetime.fromisoformat(e["time"]) for e in events]
    assert times == sorted(times)
    assert nik(15, 5, 1985, 20) not in answer.text
    for who in ("village_operator", "budget_officer", "admin"):
        answer = await api.http.get(
            f"/v1/enrollments/{enrollment_id}/history", headers=api.auth(who)
        )
        assert_problem(answer, 403, who)


async def test_audit_events_filter_and_page(api: Api) -> None:
    e = await five_enrollments(api)
    auditor = api.auth("auditor")
    everything = (await api.http.get("/v1/audit/events", headers=auditor)).json()
    items = everything["items"]
    assert everything["next_cursor"] is None
    assert [i["id"] for i in items] == sorted(i["id"] for i in items)
    assert [i["action"] for i in items].count("nominated") == 5
    assert len(items) == 6  # five nominations, one verification

    page = (await api.http.get("/v1/audit/events", params={"limit": 4}, headers=auditor)).json()
    rest = (
        await api.http.get(
            "/v1/audit/events", params={"limit": 4, "cursor": page["next_cursor"]}, headers=auditor
        )
    ).json()
    assert [i["id"] for i in page["items"] + rest["items"]] == [i["id"] for i in items]
    assert rest["next_cursor"] is None

    async def events(**params: Any) -> list[dict[str, Any]]:
        answer = await api.http.get("/v1/audit/events", params=params, headers=auditor)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["items"]
        return found

    (verified,) = await events(action="verified")
    assert (verified["enrollment_id"], verified["actor"], verified["role"]) == (
        e["perangkat"],
        "test-dpmd_verifier",
        "dpmd_verifier",
    )
    assert [i["action"] for i in await events(enrollment_id=e["perangkat"])] == [
        "nominated",
        "verified",
    ]
    assert {i["enrollment_id"] for i in await events(actor="test-other-village")} == {e["other"]}
    # The log is in the order it was written; when each step happened is ``occurred_at``.
    first = min(dt.datetime.fromisoformat(i["occurred_at"]) for i in items)
    last = max(dt.datetime.fromisoformat(i["occurred_at"]) for i in items)
    assert len(await events(since=first.isoformat())) == 6
    assert await events(since=(last + dt.timedelta(seconds=1)).isoformat()) == []
    assert await events(until=first.isoformat()) == []
    assert await events(action="refused_verification") == []
    for params in ({"limit": 0}, {"cursor": -1}, {"since": "last week"}):
        answer = await api.http.get("/v1/audit/events", params=params, headers=auditor)
        assert_problem(answer, 422, str(params))

    chain = (await api.http.get("/v1/audit/verify", headers=auditor)).json()
    assert chain == {"ok": True, "checked": 6, "first_broken": None}


async def test_coverage_report_groups_and_totals(api: Api) -> None:
    active = await activate(api, worker(30), worker(31, category="linmas"))
    waiting = await nominate(api, worker(32, category="linmas"))
    other = await nominate(api, worker(33), village=OTHER_VILLAGE, who="other_village_operator")
    await verify(api, *other)

    async def report(group_by: str, who: str = "auditor") -> dict[str, Any]:
        answer = await api.http.get(
            "/v1/reports/coverage",
            params={"program": api.program.code, "group_by": group_by},
            headers=api.auth(who),
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        assert (body["program"], body["group_by"]) == (api.program.code, group_by)
        assert body["total_enrollments"] == 4
        assert body["total_premium_idr"] == 2 * PREMIUM  # only what is funded
        assert sum(line["enrollments"] for line in body["lines"]) == 4
        assert sum(line["premium_idr"] for line in body["lines"]) == 2 * PREMIUM
        return body

    def lines(body: dict[str, Any]) -> dict[str, tuple[str, int, int, int]]:
        return {
            line["key"]: (line["name"], line["enrollments"], line["active"], line["premium_idr"])
            for line in body["lines"]
        }

    assert lines(await report("district")) == {"16.03.01": ("Tanjung Agung", 4, 2, 2 * PREMIUM)}
    assert lines(await report("village")) == {
        VILLAGE: ("Embawang", 3, 2, 2 * PREMIUM),
        OTHER_VILLAGE: ("Pagar Dewa", 1, 0, 0),
    }
    assert lines(await report("category")) == {
        "linmas": ("linmas", 2, 1, PREMIUM),
        "perangkat_desa": ("perangkat_desa", 2, 1, PREMIUM),
    }
    assert lines(await report("state")) == {
        "active": ("active", 2, 2, 2 * PREMIUM),
        "nominated": ("nominated", 1, 0, 0),
        "verified": ("verified", 1, 0, 0),
    }
    for who in ("dpmd_verifier", "budget_officer"):
        await report("district", who)
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
    assert len(active + waiting) == 3


async def test_coverage_lookup_by_nik_and_day(api: Api) -> None:
    (enrollment_id,) = await activate(api, worker(40))
    (waiting,) = await nominate(api, worker(41))
    seen = await detail(api, enrollment_id)
    start = dt.date.fromisoformat(seen["coverage_start"])
    end = dt.date.fromisoformat(seen["coverage_end"])

    async def lookup(number: str, on: dt.date | str, who: str = "auditor") -> dict[str, Any]:
        answer = await api.http.get(
            "/v1/coverage", params={"nik": number, "on": str(on)}, headers=api.auth(who)
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    number = nik(15, 5, 1985, 40)
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
    assert await lookup(nik(15, 5, 1985, 41), start) == empty  # nominated, not covered
    assert await lookup(nik(15, 5, 1985, 49), start) == empty  # unknown person
    for params in (
        {"nik": "12345", "on": str(start)},
        {"nik": "16030115058500AB", "on": str(start)},
        {"nik": number, "on": "15/05/2026"},
        {"nik": number},
        {"on": str(start)},
    ):
        answer = await api.http.get("/v1/coverage", params=params, headers=api.auth("auditor"))
        problem = assert_problem(answer, 422, str(params))
        assert problem["errors"] and all(e["field"] in ("nik", "on") for e in problem["errors"])
    assert waiting


async def test_nul_characters_and_out_of_range_values_are_422_not_500(api: Api) -> None:
    """PostgreSQL cannot store or compare a NUL; a NUL that reached a workflow's write made it
    retry forever. Found by fuzzing: each of these was a 500 (or a hang) on PostgreSQL."""
    (enrollment_id,) = await nominate(api, worker(50))
    auditor = api.auth("auditor")
    for url in (
        "/v1/enrollments?program=ME%00",
        "/v1/enrollments?cursor=AA==",  # base64 of a NUL
        "/v1/enrollments/enr%00x",
        "/v1/programs/ME%00",
        "/v1/audit/events?actor=%00",
        "/v1/audit/events?cursor=2508594772",  # beyond the 32-bit id column
        "/v1/audit/events?since=0001-01-01T00:00:00%2B14:00",  # before year 1 in UTC
        f"/v1/coverage?nik=1603011505850050%00&on={dt.date.today()}",
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
    naive = await api.http.get("/v1/audit/events?since=2000-01-01T00:00:00", headers=auditor)
    assert [e["action"] for e in naive.json()["items"]] == ["nominated"]
    assert (await detail(api, enrollment_id))["state"] == "nominated"

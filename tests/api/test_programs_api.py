"""Programs: an admin creates them with their funding sources; every key reads them."""

from __future__ import annotations

import uuid
from typing import Any

from tests.api.conftest import Api
from tests.api.test_auth_and_roles import assert_problem


def unique(prefix: str) -> str:
    """A program code no other test uses: the session's database is shared."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def program_body(code: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "name": f"Program {code}",
        "period_start": "2031-01-01",
        "period_end": "2031-06-30",
        "max_age": 58,
        "renewal_lead_days": 20,
        "funding_sources": [
            {
                "code": "APBD",
                "name": "APBD Muara Enim",
                "ceiling_idr": 25_000_000,
                "categories": ["perangkat_desa", "linmas", "guru_ngaji"],
            },
            {
                "code": "DBH_SAWIT",
                "name": "DBH Sawit",
                "ceiling_idr": 7_500_000,
                "categories": ["petani_sawit"],
            },
        ],
    }
    body.update(overrides)
    return body


async def test_create_program_by_admin_is_read_by_every_role(api: Api) -> None:
    admin = api.auth("admin")
    later, earlier = unique("ME-2031"), unique("ME-2030")
    body = program_body(later, verification_reminder_days=5, verification_expiry_days=30)
    created = await api.http.post("/v1/programs", json=body, headers=admin)
    assert created.status_code == 201, created.text
    program = created.json()
    assert program["code"] == later
    assert (program["period_start"], program["period_end"]) == ("2031-01-01", "2031-06-30")
    assert (program["max_age"], program["renewal_lead_days"], program["successor"]) == (
        58,
        20,
        None,
    )
    assert (
        program["verification_reminder_days"],
        program["verification_deadline_days"],
        program["verification_expiry_days"],
    ) == (5, 14, 30)
    sources = {s["code"]: s for s in program["funding_sources"]}
    assert sources["APBD"] == {
        "code": "APBD",
        "name": "APBD Muara Enim",
        "ceiling_idr": 25_000_000,
        "committed_idr": 0,
        "remaining_idr": 25_000_000,
        "categories": ["perangkat_desa", "linmas", "guru_ngaji"],
    }
    assert sources["DBH_SAWIT"]["remaining_idr"] == 7_500_000

    # A successor that exists is accepted.
    before = program_body(
        earlier, period_start="2030-07-01", period_end="2030-12-31", successor=later
    )
    created = await api.http.post("/v1/programs", json=before, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["successor"] == later
    assert created.json()["verification_expiry_days"] is None  # no expiry unless asked

    for role in ("village_operator", "dpmd_verifier", "budget_officer", "auditor", "admin"):
        listed = await api.http.get("/v1/programs", headers=api.auth(role))
        assert listed.status_code == 200
        codes = [p["code"] for p in listed.json()]
        assert {api.program.code, earlier, later} <= set(codes)
        assert len(codes) == len(set(codes))
        one = await api.http.get(f"/v1/programs/{later}", headers=api.auth(role))
        assert one.json() == program


async def test_get_program_shows_ceiling_committed_and_remaining(api: Api) -> None:
    answer = await api.http.get(f"/v1/programs/{api.program.code}", headers=api.auth("auditor"))
    assert answer.status_code == 200
    sources = {s["code"]: s for s in answer.json()["funding_sources"]}
    assert set(sources) == {"APBD", "DBH_SAWIT"}
    for source in sources.values():
        assert (source["ceiling_idr"], source["committed_idr"], source["remaining_idr"]) == (
            10_000_000,
            0,
            10_000_000,
        )
    assert sources["DBH_SAWIT"]["categories"] == ["petani_sawit"]


async def test_create_program_with_a_taken_code_is_409(api: Api) -> None:
    admin = api.auth("admin")
    code = unique("ME-DUP")
    first = await api.http.post("/v1/programs", json=program_body(code), headers=admin)
    assert first.status_code == 201
    again = await api.http.post(
        "/v1/programs", json=program_body(code, name="Another name"), headers=admin
    )
    body = assert_problem(again, 409, "same code twice")
    assert code in body["detail"]
    fixture_code = await api.http.post(
        "/v1/programs", json=program_body(api.program.code), headers=admin
    )
    assert_problem(fixture_code, 409, "the fixture's code")
    kept = await api.http.get(f"/v1/programs/{code}", headers=admin)
    assert kept.json()["name"] == f"Program {code}"


async def test_create_program_with_an_unknown_successor_is_422(api: Api) -> None:
    code = unique("ME-ORPHAN")
    answer = await api.http.post(
        "/v1/programs",
        json=program_body(code, successor=unique("ME-NONE")),
        headers=api.auth("admin"),
    )
    body = assert_problem(answer, 422, "unknown successor")
    assert [e["field"] for e in body["errors"]] == ["successor"]
    assert (
        await api.http.get(f"/v1/programs/{code}", headers=api.auth("admin"))
    ).status_code == 404


async def test_create_invalid_program_is_422_with_field_errors(api: Api) -> None:
    admin = api.auth("admin")
    cases: list[tuple[dict[str, Any], str]] = [
        (
            program_body(unique("ME-BACK"), period_start="2031-06-30", period_end="2031-01-01"),
            "period_end",
        ),
        (program_body(unique("ME-LEAD"), renewal_lead_days=200), "renewal_lead_days"),
        # No BPU rate before July 2015; at most five years (a period to 9999 broke nominations).
        (program_body(unique("ME-OLD"), period_start="2010-01-01"), "period_start"),
        (program_body(unique("ME-LONG"), period_end="9999-12-31"), "period_end"),
        (program_body(unique("ME-NUL"), name="Program\u0000"), "name"),
        (program_body(unique("ME-DATE"), period_start="first of January"), "period_start"),
        (program_body(unique("ME-AGE"), max_age="sixty"), "max_age"),
        (program_body(unique("ME-EXP"), verification_expiry_days=0), "verification_expiry_days"),
        (program_body("bad code!"), "code"),
        (program_body(unique("ME-NOSRC"), funding_sources=[]), "funding_sources"),
        (program_body(unique("ME-EXTRA"), ceiling=5), "ceiling"),
        (
            program_body(
                unique("ME-CAT"),
                funding_sources=[
                    {"code": "SRC", "name": "X", "ceiling_idr": 1, "categories": ["lurah"]}
                ],
            ),
            "funding_sources[0].categories[0]",
        ),
        (
            program_body(
                unique("ME-NEG"),
                funding_sources=[
                    {"code": "SRC", "name": "X", "ceiling_idr": -1, "categories": ["bpd"]}
                ],
            ),
            "funding_sources[0].ceiling_idr",
        ),
        (
            program_body(
                unique("ME-TWICE"),
                funding_sources=[
                    {"code": "SRC", "name": "X", "ceiling_idr": 1, "categories": ["bpd"]},
                    {"code": "SRC", "name": "Y", "ceiling_idr": 1, "categories": ["rt_rw"]},
                ],
            ),
            "funding_sources",
        ),
    ]
    for body, field in cases:
        answer = await api.http.post("/v1/programs", json=body, headers=admin)
        problem = assert_problem(answer, 422, f"{body['code']}")
        fields = [e["field"] for e in problem["errors"]]
        assert field in fields, (field, problem["errors"])
        assert all(e["message"] for e in problem["errors"])
    empty = unique("ME-EMPTY")
    missing = await api.http.post("/v1/programs", json={"code": empty}, headers=admin)
    problem = assert_problem(missing, 422, "missing fields")
    assert {"name", "period_start", "period_end", "funding_sources"} <= {
        e["field"] for e in problem["errors"]
    }
    not_json = await api.http.post(
        "/v1/programs",
        content=b"{code: ME}",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert_problem(not_json, 422, "not JSON")
    # None of them was created.
    listed = {p["code"] for p in (await api.http.get("/v1/programs", headers=admin)).json()}
    assert not listed & {body["code"] for body, _ in cases}
    assert empty not in listed


async def test_get_unknown_program_is_404(api: Api) -> None:
    code = unique("ME-NONE")
    body = assert_problem(
        await api.http.get(f"/v1/programs/{code}", headers=api.auth("auditor")), 404, "unknown"
    )
    assert code in body["detail"]

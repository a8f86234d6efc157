"""Who may call what: 401 without a valid key, 403 for a role that may not, 404 (not 403) for a
village operator asking about another village's enrollment. Every refusal is problem+json."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from services.keys import Role, create_key, list_keys, revoke_key
from tests.api.conftest import Api
from tests.harness import VILLAGE, nik

PROBLEM = "application/problem+json"
ALL_ROLES = (
    "village_operator",
    "dpmd_verifier",
    "budget_officer",
    "auditor",
    "admin",
)
READERS = ("village_operator", "dpmd_verifier", "budget_officer", "auditor")


def assert_problem(response: httpx.Response, status: int, context: str = "") -> dict[str, Any]:
    where = f"{context}: {response.status_code} {response.text[:300]}"
    assert response.status_code == status, where
    assert response.headers["content-type"].startswith(PROBLEM), where
    body: dict[str, Any] = response.json()
    assert body["status"] == status, where
    assert {"type", "title", "status", "detail"} <= set(body), where
    assert isinstance(body["detail"], str) and body["detail"], where
    assert "Traceback" not in response.text, where
    return body


def worker(serial: int, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "nik": nik(15, 5, 1985, serial),
        "full_name": f"Warga Uji {serial}",
        "birth_date": "1985-05-15",
        "gender": "L",
        "category": "perangkat_desa",
    }
    row.update(overrides)
    return row


async def nominated_id(api: Api, serial: int = 1) -> str:
    answer = await api.http.post(
        f"/v1/programs/{api.program.code}/nominations",
        json={"village_code": VILLAGE, "workers": [worker(serial)]},
        headers=api.auth("village_operator"),
    )
    assert answer.status_code == 200, answer.text
    (accepted,) = answer.json()["accepted"]
    enrollment_id: str = accepted["enrollment_id"]
    return enrollment_id


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {code} and {id} filled in per test
    allowed: tuple[str, ...]
    body: dict[str, Any] | None = None

    def url(self, code: str, enrollment_id: str) -> str:
        return self.path.format(code=code, id=enrollment_id)

    async def call(
        self, api: Api, headers: dict[str, str], code: str, enrollment_id: str
    ) -> httpx.Response:
        return await api.http.request(
            self.method, self.url(code, enrollment_id), json=self.body, headers=headers
        )

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


TODAY = dt.date.today().isoformat()
PROGRAM_BODY = {
    "code": f"AUTHZ-{uuid.uuid4().hex[:8]}",  # never created: every call with it is refused
    "name": "Never created",
    "period_start": "2030-01-01",
    "period_end": "2030-03-31",
    "funding_sources": [
        {"code": "APBD", "name": "APBD", "ceiling_idr": 1000, "categories": ["linmas"]}
    ],
}

ENDPOINTS = (
    Endpoint("POST", "/v1/programs", ("admin",), PROGRAM_BODY),
    Endpoint("GET", "/v1/programs", ALL_ROLES),
    Endpoint("GET", "/v1/programs/{code}", ALL_ROLES),
    Endpoint(
        "POST",
        "/v1/programs/{code}/nominations",
        ("village_operator",),
        {"village_code": VILLAGE, "workers": [worker(2)]},
    ),
    Endpoint("GET", "/v1/nominations/template.xlsx", ALL_ROLES),
    Endpoint("GET", "/v1/enrollments", READERS),
    Endpoint("GET", "/v1/enrollments/{id}", READERS),
    Endpoint("POST", "/v1/enrollments/{id}/verification", ("dpmd_verifier",), {"approve": True}),
    Endpoint(
        "POST",
        "/v1/programs/{code}/verifications",
        ("dpmd_verifier",),
        {"village_code": VILLAGE, "approve": True},
    ),
    Endpoint(
        "POST",
        "/v1/programs/{code}/budget-approvals",
        ("budget_officer",),
        {"funding_source": "APBD", "village_code": VILLAGE},
    ),
    Endpoint("POST", "/v1/enrollments/{id}/withdrawal", ("village_operator",), {"reason": "moved"}),
    Endpoint(
        "POST",
        "/v1/enrollments/{id}/termination",
        ("dpmd_verifier",),
        {"reason": "death", "effective_date": TODAY},
    ),
    Endpoint("POST", "/v1/enrollments/{id}/renewal", ("village_operator",), {"confirm": True}),
    Endpoint(
        "POST",
        "/v1/enrollments/{id}/resubmission",
        ("dpmd_verifier",),
        {"corrections": {"full_name": "Nama Benar"}, "reason": "typo"},
    ),
    Endpoint("GET", "/v1/enrollments/{id}/history", ("auditor", "dpmd_verifier")),
    Endpoint("GET", "/v1/audit/events", ("auditor",)),
    Endpoint("GET", "/v1/audit/verify", ("auditor",)),
    Endpoint(
        "GET",
        "/v1/reports/coverage?program={code}",
        ("auditor", "dpmd_verifier", "budget_officer"),
    ),
    Endpoint(
        "POST",
        "/v1/coverage",
        ("auditor", "dpmd_verifier"),
        {"nik": nik(15, 5, 1985, 1), "on": TODAY},
    ),
    Endpoint(
        "POST",
        "/v1/enrollments/{id}/exception-resolution",
        ("dpmd_verifier",),
        {"retry": True, "note": "BPJS cleared it"},
    ),
    Endpoint("GET", "/v1/conflicts", ("auditor", "dpmd_verifier")),
    Endpoint("POST", "/v1/conflicts/{id}/resolution", ("dpmd_verifier",), {"note": "told"}),
    Endpoint("POST", "/codec/decode", ("auditor",), {"payloads": []}),
    Endpoint("POST", "/codec/encode", ("auditor",), {"payloads": []}),
)


def test_route_table_lists_every_route(api: Api) -> None:
    """A new route must be added to ENDPOINTS, so its roles are tested."""
    listed = {(e.method, e.path.split("?")[0]) for e in ENDPOINTS}
    routes = {
        (method, path.replace("{enrollment_id}", "{id}").replace("{conflict_id}", "{id}"))
        for path, item in api.app.openapi()["paths"].items()
        for method in (m.upper() for m in item)
        if path not in ("/healthz", "/readyz")
    }
    assert routes == listed


async def test_call_without_a_valid_key_is_401_everywhere(api: Api) -> None:
    enrollment_id = await nominated_id(api)
    attempts: dict[str, dict[str, str]] = {
        "no key": {},
        "unknown key": {"Authorization": "Bearer rtn_not-a-key-anyone-was-given"},
        "empty bearer": {"Authorization": "Bearer "},
        "basic scheme": {"Authorization": f"Basic {api.keys['admin']}"},
        "bare key": {"Authorization": api.keys["admin"]},
    }
    for endpoint in ENDPOINTS:
        for what, headers in attempts.items():
            answer = await endpoint.call(api, headers, api.program.code, enrollment_id)
            assert_problem(answer, 401, f"{endpoint} with {what}")
            assert answer.headers["www-authenticate"] == "Bearer", endpoint


async def test_call_with_a_revoked_key_is_401(api: Api) -> None:
    name = f"soon-revoked-{uuid.uuid4().hex[:8]}"
    key = create_key(api.engine, role=Role.AUDITOR, name=name)
    headers = {"Authorization": f"Bearer {key}"}
    assert (await api.http.get("/v1/audit/verify", headers=headers)).status_code == 200
    (row,) = [k for k in list_keys(api.engine) if k.name == name]
    assert row.id is not None
    assert revoke_key(api.engine, row.id)
    answer = await api.http.get("/v1/audit/verify", headers=headers)
    body = assert_problem(answer, 401, "revoked key")
    assert "revoked" in body["detail"]
    assert not revoke_key(api.engine, row.id)  # twice: nothing more to revoke


async def test_call_by_a_role_that_may_not_is_403_on_every_route(api: Api) -> None:
    enrollment_id = await nominated_id(api)
    for endpoint in ENDPOINTS:
        for role in ALL_ROLES:
            if role in endpoint.allowed:
                continue
            answer = await endpoint.call(api, api.auth(role), api.program.code, enrollment_id)
            body = assert_problem(answer, 403, f"{endpoint} as {role}")
            assert role in body["detail"]
    # Nothing a refused call asked for happened, and nothing of it was recorded.
    code = PROGRAM_BODY["code"]
    created = await api.http.get(f"/v1/programs/{code}", headers=api.auth("admin"))
    assert_problem(created, 404, "the program a refused call asked for")
    detail = await api.http.get(f"/v1/enrollments/{enrollment_id}", headers=api.auth("auditor"))
    assert detail.json()["state"] == "nominated"
    listed = await api.http.get(
        "/v1/enrollments", params={"program": api.program.code}, headers=api.auth("auditor")
    )
    assert [e["id"] for e in listed.json()["items"]] == [enrollment_id]
    events = await api.http.get(
        "/v1/audit/events", params={"enrollment_id": enrollment_id}, headers=api.auth("auditor")
    )
    assert [e["action"] for e in events.json()["items"]] == ["nominated"]


async def test_call_by_a_role_that_may_not_named_cases_are_403(api: Api) -> None:
    """The cases people ask about, spelled out."""
    enrollment_id = await nominated_id(api)
    code = api.program.code
    cases = [
        ("auditor", "POST", f"/v1/enrollments/{enrollment_id}/verification", {"approve": True}),
        (
            "village_operator",
            "POST",
            f"/v1/programs/{code}/budget-approvals",
            {"funding_source": "APBD", "enrollment_ids": [enrollment_id]},
        ),
        ("budget_officer", "GET", f"/v1/enrollments/{enrollment_id}/history", None),
        (
            "admin",
            "POST",
            f"/v1/programs/{code}/nominations",
            {"village_code": VILLAGE, "workers": [worker(3)]},
        ),
        ("admin", "GET", "/v1/enrollments", None),
        ("village_operator", "POST", "/v1/programs", PROGRAM_BODY),
        ("dpmd_verifier", "GET", "/v1/audit/events", None),
        ("budget_officer", "POST", "/v1/coverage", {"nik": nik(15, 5, 1985, 1), "on": TODAY}),
    ]
    for role, method, url, body in cases:
        answer = await api.http.request(method, url, json=body, headers=api.auth(role))
        assert_problem(answer, 403, f"{method} {url} as {role}")


async def test_read_by_an_allowed_role_is_200(api: Api) -> None:
    enrollment_id = await nominated_id(api)
    for endpoint in ENDPOINTS:
        if endpoint.method != "GET":
            continue
        for role in endpoint.allowed:
            answer = await endpoint.call(api, api.auth(role), api.program.code, enrollment_id)
            assert answer.status_code == 200, f"{endpoint} as {role}: {answer.text[:300]}"


async def test_call_on_another_villages_enrollment_is_404_not_403(api: Api) -> None:
    enrollment_id = await nominated_id(api)
    other = api.auth("other_village_operator")
    unknown = "E-does-not-exist"
    for method, suffix, body in (
        ("GET", "", None),
        ("POST", "/withdrawal", {"reason": "not ours"}),
        ("POST", "/renewal", {"confirm": True}),
    ):
        theirs = await api.http.request(
            method, f"/v1/enrollments/{enrollment_id}{suffix}", json=body, headers=other
        )
        missing = await api.http.request(
            method, f"/v1/enrollments/{unknown}{suffix}", json=body, headers=other
        )
        seen = assert_problem(theirs, 404, f"{method} {suffix} of another village")
        absent = assert_problem(missing, 404, f"{method} {suffix} of nothing")
        # The answer about another village's enrollment is the answer about no enrollment.
        assert seen["detail"].replace(enrollment_id, "X") == absent["detail"].replace(unknown, "X")
        assert set(seen) == set(absent)
    # The step was not taken, and nothing about it was recorded as the other village's attempt.
    detail = await api.http.get(
        f"/v1/enrollments/{enrollment_id}", headers=api.auth("village_operator")
    )
    assert detail.json()["state"] == "nominated"
    events = await api.http.get(
        "/v1/audit/events", params={"enrollment_id": enrollment_id}, headers=api.auth("auditor")
    )
    assert [(e["action"], e["actor"]) for e in events.json()["items"]] == [
        ("nominated", "test-village_operator")
    ]
    # Its list does not show the enrollment either.
    listed = await api.http.get(
        "/v1/enrollments", params={"program": api.program.code}, headers=other
    )
    assert listed.json()["items"] == []


async def test_call_on_an_unknown_enrollment_or_program_is_404(api: Api) -> None:
    verifier = api.auth("dpmd_verifier")
    for method, url, body in (
        ("GET", "/v1/enrollments/E-nope", None),
        ("GET", "/v1/enrollments/E-nope/history", None),
        ("POST", "/v1/enrollments/E-nope/verification", {"approve": True}),
        (
            "POST",
            "/v1/enrollments/E-nope/termination",
            {"reason": "death", "effective_date": TODAY},
        ),
        ("POST", "/v1/programs/NOPE/verifications", {"village_code": VILLAGE, "approve": True}),
        ("GET", "/v1/programs/NOPE", None),
        ("GET", "/v1/reports/coverage?program=NOPE", None),
    ):
        assert_problem(await api.http.request(method, url, json=body, headers=verifier), 404, url)
    answer = await api.http.post(
        "/v1/programs/NOPE/nominations",
        json={"village_code": VILLAGE, "workers": [worker(4)]},
        headers=api.auth("village_operator"),
    )
    assert_problem(answer, 404, "nominating into an unknown program")
    answer = await api.http.post(
        "/v1/programs/NOPE/budget-approvals",
        json={"funding_source": "APBD", "village_code": VILLAGE},
        headers=api.auth("budget_officer"),
    )
    assert_problem(answer, 404, "budget for an unknown program")


async def test_get_healthz_needs_no_key(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}


async def test_unknown_path_with_a_valid_key_is_404(api: Api) -> None:
    answer = await api.http.get("/v1/no/such/path", headers=api.auth("auditor"))
    assert_problem(answer, 404, "an unknown path")

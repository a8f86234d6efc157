"""Nomination lists: JSON, CSV and XLSX uploads, per-row answers, duplicates, a person nominated
again in the same period, the template, and what the request log says (never a NIK in clear).

Every test works in a program of its own on the session's shared projection: counts and
listings are read for that program only."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openpyxl
import pytest
import structlog

import core.logs
from api.app import create_app
from api.state import AppState
from core.logs import configure_logging
from domain.nik import mask
from services.keys import Role, create_key
from services.nominations import LIST_CHUNK
from services.spreadsheets import build_template
from tests.api.conftest import Api
from tests.api.test_auth_and_roles import assert_problem, worker
from tests.harness import KELURAHAN, OTHER_VILLAGE, VILLAGE, committed_of, nik
from worker import ACTIVITY_SLOTS, build_worker

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def url(api: Api) -> str:
    return f"/v1/programs/{api.program.code}/nominations"


async def send_json(
    api: Api,
    workers: list[dict[str, Any]],
    *,
    village: str = VILLAGE,
    who: str = "village_operator",
) -> httpx.Response:
    return await api.http.post(
        url(api), json={"village_code": village, "workers": workers}, headers=api.auth(who)
    )


async def upload(
    api: Api,
    data: bytes,
    filename: str,
    content_type: str,
    *,
    village: str | None = VILLAGE,
    who: str = "village_operator",
) -> httpx.Response:
    form = {"village_code": village} if village is not None else {}
    return await api.http.post(
        url(api),
        files={"file": (filename, data, content_type)},
        data=form,
        headers=api.auth(who),
    )


async def enrollment_count(api: Api) -> int:
    """How many enrollments the test's program has."""
    page = await api.http.get(
        "/v1/enrollments",
        params={"program": api.program.code, "limit": 500},
        headers=api.auth("auditor"),
    )
    assert page.json()["next_cursor"] is None
    return len(page.json()["items"])


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def enrollment_of(api: Api, enrollment_id: str, who: str = "auditor") -> httpx.Response:
    return await api.http.get(f"/v1/enrollments/{enrollment_id}", headers=api.auth(who))


async def audit_events(api: Api, enrollment_id: str) -> list[dict[str, Any]]:
    answer = await api.http.get(
        "/v1/audit/events", params={"enrollment_id": enrollment_id}, headers=api.auth("auditor")
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


# --- JSON ---------------------------------------------------------------------------------------


async def test_json_list_accepts_valid_rows_and_explains_each_rejected_one(api: Api) -> None:
    woman = nik(15, 5, 1985, 21, female=True)
    workers: list[dict[str, Any]] = [
        worker(20, category="linmas", phone="081234567890", declared_income_idr=1_500_000),
        {
            "nik": "12345",
            "full_name": "Pendek",
            "birth_date": "1985-05-15",
            "gender": "L",
            "category": "linmas",
        },
        worker(21, nik=woman, gender="P", category="guru_ngaji"),
        worker(22, gender="P"),  # the NIK says male
        worker(23, category="lurah"),
        worker(24, birth_date="15 Mei 1985"),
        worker(25, birth_date="1940-05-15", nik=nik(15, 5, 1940, 25)),  # too old
        worker(26, full_name=""),
        worker(27, phone="12"),
        worker(28, declared_income_idr="banyak"),
        {},
        worker(29, category="petani_sawit", nik=int(nik(15, 5, 1985, 29))),  # a number cell
    ]
    result = ok(await send_json(api, workers))
    assert [a["row"] for a in result["accepted"]] == [1, 3, 12]
    for accepted in result["accepted"]:
        assert accepted["state"] == "nominated"
        assert accepted["nik_masked"].count("*") == 8
    assert result["accepted"][1]["nik_masked"] == f"{woman[:6]}********{woman[14:]}"
    rejected = {r["row"]: r for r in result["rejected"]}
    assert sorted(rejected) == [2, 4, 5, 6, 7, 8, 9, 10, 11]
    expected_fields = {
        2: "nik",
        4: "gender",
        5: "category",
        6: "birth_date",
        7: "birth_date",
        8: "full_name",
        9: "phone",
        10: "declared_income_idr",
    }
    for row, field in expected_fields.items():
        fields = [e["field"] for e in rejected[row]["errors"]]
        assert field in fields, (row, rejected[row])
        assert all(e["message"] for e in rejected[row]["errors"])
    assert {"nik", "full_name", "birth_date", "gender", "category"} <= {
        e["field"] for e in rejected[11]["errors"]
    }
    assert rejected[4]["nik_masked"] == f"{nik(15, 5, 1985, 22)[:6]}********22"

    # Read your writes: the accepted ones are listed at once, nothing of the rejected ones.
    listed = await api.http.get(
        "/v1/enrollments",
        params={"program": api.program.code},
        headers=api.auth("village_operator"),
    )
    ids = sorted(e["id"] for e in listed.json()["items"])
    assert ids == sorted(a["enrollment_id"] for a in result["accepted"])
    detail = await api.http.get(f"/v1/enrollments/{ids[0]}", headers=api.auth("village_operator"))
    assert detail.json()["state"] == "nominated"


async def test_same_list_twice_changes_nothing(api: Api) -> None:
    workers = [worker(30), worker(31, category="bpd"), worker(32, category="petani_sawit")]
    first = ok(await send_json(api, workers))
    assert len(first["accepted"]) == 3
    ids = [a["enrollment_id"] for a in first["accepted"]]
    before = await enrollment_count(api)
    audit_before = [await audit_events(api, i) for i in ids]
    assert [[e["action"] for e in events] for events in audit_before] == [["nominated"]] * 3
    second = ok(await send_json(api, workers))
    assert second["rejected"] == []
    assert [(a["row"], a["enrollment_id"], a["state"]) for a in second["accepted"]] == [
        (a["row"], a["enrollment_id"], "nominated") for a in first["accepted"]
    ]
    assert await enrollment_count(api) == before == 3
    assert [await audit_events(api, i) for i in ids] == audit_before


async def test_duplicate_nik_within_one_list_is_rejected_per_row(api: Api) -> None:
    workers = [worker(40), worker(41), worker(40, full_name="Orang Lain"), worker(41)]
    result = ok(await send_json(api, workers))
    assert [a["row"] for a in result["accepted"]] == [1, 2]
    rejected = {r["row"]: r["errors"] for r in result["rejected"]}
    assert rejected == {
        3: [{"field": "nik", "message": "same NIK as row 1 of this list"}],
        4: [{"field": "nik", "message": "same NIK as row 2 of this list"}],
    }


CONFLICT = "already nominated elsewhere in this period; DPMD has been told"


async def conflicts(api: Api, who: str = "dpmd_verifier", **params: str) -> Any:
    answer = await api.http.get("/v1/conflicts", params=params, headers=api.auth(who))
    assert answer.status_code == 200, answer.text
    return [c for c in answer.json()["items"] if c["program"] == api.program.code]


async def test_another_villages_nominee_is_refused_without_a_trace_of_theirs(api: Api) -> None:
    """A village probing a NIK learns only that the person is nominated elsewhere: no
    enrollment id, no village, no state. DPMD's queue shows the conflict with both villages."""
    (mine,) = ok(await send_json(api, [worker(50)]))["accepted"]
    theirs = ok(
        await send_json(
            api, [worker(50), worker(51)], village=OTHER_VILLAGE, who="other_village_operator"
        )
    )
    assert [a["row"] for a in theirs["accepted"]] == [2]
    (refused,) = theirs["rejected"]
    assert (refused["row"], refused["errors"]) == (1, [{"field": "nik", "message": CONFLICT}])
    assert mine["enrollment_id"] not in str(theirs) and VILLAGE not in str(theirs)
    # The first village's enrollment is untouched, and hidden from the other village.
    detail = await api.http.get(
        f"/v1/enrollments/{mine['enrollment_id']}", headers=api.auth("village_operator")
    )
    assert (detail.json()["village_code"], detail.json()["state"]) == (VILLAGE, "nominated")
    # Tried again, refused again: one conflict per list sent.
    again = ok(
        await send_json(api, [worker(50)], village=OTHER_VILLAGE, who="other_village_operator")
    )
    assert again["accepted"] == [] and again["rejected"][0]["errors"][0]["message"] == CONFLICT

    queued = await conflicts(api)
    assert [
        (c["enrollment_id"], c["held_by_village"], c["nominated_by_village"], c["nominated_by"])
        for c in queued
    ] == [(mine["enrollment_id"], VILLAGE, OTHER_VILLAGE, "test-other-village")] * 2
    assert queued[0]["nik_masked"] == mine["nik_masked"]
    assert (await conflicts(api, "auditor")) == queued
    for role in ("village_operator", "other_village_operator", "budget_officer"):
        seen = await api.http.get("/v1/conflicts", headers=api.auth(role))
        assert seen.status_code == 403, (role, seen.text)

    first = queued[0]["id"]
    resolve = f"/v1/conflicts/{first}/resolution"
    note = {"note": "told Embawang; the other village withdraws its row"}
    by_operator = await api.http.post(resolve, json=note, headers=api.auth("village_operator"))
    assert by_operator.status_code == 403
    answer = await api.http.post(resolve, json=note, headers=api.auth("dpmd_verifier"))
    assert answer.status_code == 200, answer.text
    assert (answer.json()["resolved_by"], answer.json()["resolution"]) == (
        "test-dpmd_verifier",
        note["note"],
    )
    twice = await api.http.post(resolve, json=note, headers=api.auth("dpmd_verifier"))
    assert twice.status_code == 409
    assert [c["id"] for c in await conflicts(api)] == [queued[1]["id"]]
    assert [c["id"] for c in await conflicts(api, resolved="true")] == [first]
    audit = await api.http.get(
        "/v1/audit/events",
        params={"enrollment_id": mine["enrollment_id"]},
        headers=api.auth("auditor"),
    )
    actions = [e["action"] for e in audit.json()["items"]]
    assert actions.count("nomination_conflict") == 2 and "conflict_resolved" in actions


# --- a person nominated again in the same period -----------------------------------------------


async def reject(api: Api, enrollment_id: str) -> None:
    answer = await api.http.post(
        f"/v1/enrollments/{enrollment_id}/verification",
        json={"approve": False, "reason": "not on the village's SK"},
        headers=api.auth("dpmd_verifier"),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "rejected"


async def test_nominate_again_after_rejection_is_a_new_run_of_the_same_enrollment(
    api: Api,
) -> None:
    (first,) = ok(await send_json(api, [worker(140)]))["accepted"]
    enrollment_id = first["enrollment_id"]
    await reject(api, enrollment_id)

    # The new SK names the person: the same village nominates them again, with a corrected name.
    again = ok(await send_json(api, [worker(140, full_name="Warga Uji Seratus Empat Puluh")]))
    assert again["rejected"] == []
    (second,) = again["accepted"]
    assert (second["row"], second["enrollment_id"], second["state"]) == (
        1,
        enrollment_id,
        "nominated",
    )
    seen = (await enrollment_of(api, enrollment_id)).json()
    assert (seen["state"], seen["full_name"]) == ("nominated", "Warga Uji Seratus Empat Puluh")
    assert await enrollment_count(api) == 1

    # Sent once more, the list changes nothing: the new run is the person's enrollment.
    third = ok(await send_json(api, [worker(140, full_name="Warga Uji Seratus Empat Puluh")]))
    assert [(a["enrollment_id"], a["state"]) for a in third["accepted"]] == [
        (enrollment_id, "nominated")
    ]

    history = await api.http.get(
        f"/v1/enrollments/{enrollment_id}/history", headers=api.auth("dpmd_verifier")
    )
    assert history.status_code == 200, history.text
    timeline = history.json()
    assert timeline["workflow_id"] == enrollment_id
    first_run, second_run = timeline["run_ids"]
    decisions = [
        (e["action"], e["run_id"], e["state_after"])
        for e in timeline["events"]
        if e["source"] == "audit"
    ]
    assert decisions == [
        ("nominated", first_run, "nominated"),
        ("rejected", first_run, "rejected"),
        ("nominated", second_run, "nominated"),
    ]
    engine_events = [(e["action"], e["run_id"]) for e in timeline["events"]]
    for run_id in (first_run, second_run):
        assert ("workflow_started", run_id) in engine_events
    assert ("workflow_completed", first_run) in engine_events


async def test_nominate_again_by_another_village_after_rejection_is_accepted(api: Api) -> None:
    (first,) = ok(await send_json(api, [worker(141)]))["accepted"]
    enrollment_id = first["enrollment_id"]
    batch = await api.http.post(
        f"/v1/programs/{api.program.code}/verifications",
        json={"enrollment_ids": [enrollment_id], "approve": False, "reason": "moved away"},
        headers=api.auth("dpmd_verifier"),
    )
    assert batch.json()["results"][0]["state"] == "rejected", batch.text

    theirs = ok(
        await send_json(api, [worker(141)], village=OTHER_VILLAGE, who="other_village_operator")
    )
    assert [(a["enrollment_id"], a["state"]) for a in theirs["accepted"]] == [
        (enrollment_id, "nominated")
    ]
    seen = (await enrollment_of(api, enrollment_id, "other_village_operator")).json()
    assert (seen["village_code"], seen["state"]) == (OTHER_VILLAGE, "nominated")
    # The enrollment is the other village's now: hidden from the first one, and refused to it.
    assert (await enrollment_of(api, enrollment_id, "village_operator")).status_code == 404
    mine = ok(await send_json(api, [worker(141)]))
    assert mine["accepted"] == []
    assert mine["rejected"][0]["errors"] == [{"field": "nik", "message": CONFLICT}]


async def test_nominate_again_after_withdrawal_is_accepted(api: Api) -> None:
    (first,) = ok(await send_json(api, [worker(142)]))["accepted"]
    enrollment_id = first["enrollment_id"]
    answer = await api.http.post(
        f"/v1/enrollments/{enrollment_id}/withdrawal",
        json={"reason": "entered by mistake"},
        headers=api.auth("village_operator"),
    )
    assert answer.json() == {"enrollment_id": enrollment_id, "state": "withdrawn"}, answer.text
    again = ok(await send_json(api, [worker(142)]))
    assert [(a["enrollment_id"], a["state"]) for a in again["accepted"]] == [
        (enrollment_id, "nominated")
    ]
    assert (await enrollment_of(api, enrollment_id)).json()["state"] == "nominated"
    actions = [e["action"] for e in await audit_events(api, enrollment_id)]
    assert actions == ["nominated", "withdrawn", "nominated"]


async def test_nominate_again_after_already_covered_is_refused(api: Api) -> None:
    # Serial 98xx: BPJS already covers this person; the enrollment ends already_covered.
    person = worker(9841)
    (first,) = ok(await send_json(api, [person]))["accepted"]
    enrollment_id = first["enrollment_id"]
    verified = await api.http.post(
        f"/v1/enrollments/{enrollment_id}/verification",
        json={"approve": True, "reason": "on the SK"},
        headers=api.auth("dpmd_verifier"),
    )
    assert verified.status_code == 200, verified.text
    approved = await api.http.post(
        f"/v1/programs/{api.program.code}/budget-approvals",
        json={"funding_source": "APBD", "enrollment_ids": [enrollment_id]},
        headers=api.auth("budget_officer"),
    )
    assert approved.status_code == 200, approved.text
    for _ in range(60):
        if (await enrollment_of(api, enrollment_id)).json()["state"] == "already_covered":
            break
        await api.env.sleep(dt.timedelta(seconds=1))
    handle = api.rig.client.get_workflow_handle(enrollment_id)
    assert await asyncio.wait_for(handle.result(), timeout=30) == "already_covered"
    # BPJS covers them already: the budget held for them is given back.
    assert committed_of(api.engine, api.program.code) == 0

    for village, who in ((VILLAGE, "village_operator"), (OTHER_VILLAGE, "other_village_operator")):
        again = ok(await send_json(api, [person], village=village, who=who))
        assert again["accepted"] == [], village
        (refused,) = again["rejected"]
        (error,) = refused["errors"]
        assert (refused["row"], error["field"]) == (1, "nik")
        if village == VILLAGE:  # its own village's enrollment: named, with how it ended
            assert enrollment_id in error["message"] and "already_covered" in error["message"]
        else:
            assert error["message"] == CONFLICT
    seen = (await enrollment_of(api, enrollment_id)).json()
    assert (seen["state"], seen["village_code"]) == ("already_covered", VILLAGE)
    assert [e["action"] for e in await audit_events(api, enrollment_id)].count("nominated") == 1


async def test_operator_cannot_nominate_for_another_village(api: Api) -> None:
    answer = await send_json(api, [worker(60)], village=OTHER_VILLAGE)
    body = assert_problem(answer, 403, "another village's list")
    assert VILLAGE in body["detail"]
    csv = (
        f"nik,full_name,birth_date,gender,category\r\n{nik(15, 5, 1985, 61)},A,1985-05-15,L,bpd\r\n"
    )
    answer = await upload(api, csv.encode(), "daftar.csv", "text/csv", village=OTHER_VILLAGE)
    assert_problem(answer, 403, "another village's upload")
    assert await enrollment_count(api) == 0


async def test_village_code_written_without_dots_is_the_same_village(api: Api) -> None:
    result = ok(await send_json(api, [worker(62)], village=VILLAGE.replace(".", "")))
    assert len(result["accepted"]) == 1


async def test_kelurahan_cannot_nominate_desa_only_categories(api: Api) -> None:
    key = create_key(
        api.engine, role=Role.VILLAGE_OPERATOR, name="op-tungkal", village_code=KELURAHAN
    )
    answer = await api.http.post(
        url(api),
        json={
            "village_code": KELURAHAN,
            "workers": [
                worker(70, category="kepala_desa"),
                worker(71, category="perangkat_desa"),
                worker(72, category="rt_rw"),
            ],
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    result = ok(answer)
    assert [a["row"] for a in result["accepted"]] == [3]
    for refused in result["rejected"]:
        (error,) = refused["errors"]
        assert error["field"] == "category"
        assert "kelurahan" in error["message"]
    detail = await api.http.get(
        f"/v1/enrollments/{result['accepted'][0]['enrollment_id']}", headers=api.auth("auditor")
    )
    assert (detail.json()["village_code"], detail.json()["district_code"]) == (
        KELURAHAN,
        "16.03.02",
    )


async def test_bad_json_bodies_are_422_with_field_errors(api: Api) -> None:
    headers = api.auth("village_operator")
    cases: list[tuple[Any, str]] = [
        ({"village_code": VILLAGE, "workers": "everyone"}, "workers"),
        ({"village_code": VILLAGE, "workers": []}, "workers"),
        ({"village_code": VILLAGE}, "workers"),
        ({"workers": [worker(80)]}, "village_code"),
        ({"village_code": 1603012011, "workers": [worker(80)]}, "village_code"),
        ({"village_code": VILLAGE, "workers": [worker(80)], "extra": 1}, "extra"),
        ({"village_code": VILLAGE, "workers": [{"nik": ["1603"]}]}, "workers[0].nik"),
        (
            {"village_code": VILLAGE, "workers": [{"full_name": {"first": "A"}}]},
            "workers[0].full_name",
        ),
        ([worker(80)], "request"),
    ]
    for body, field in cases:
        answer = await api.http.post(url(api), json=body, headers=headers)
        problem = assert_problem(answer, 422, json.dumps(body)[:80])
        fields = [e["field"] for e in problem["errors"]]
        assert any(f == field or f.startswith(field) for f in fields), (field, problem["errors"])
    not_json = await api.http.post(
        url(api), content=b"village_code=x", headers={**headers, "Content-Type": "application/json"}
    )
    assert_problem(not_json, 422, "not JSON")
    plain = await api.http.post(
        url(api), content=b"hello", headers={**headers, "Content-Type": "text/plain"}
    )
    assert_problem(plain, 415, "text/plain")
    assert await enrollment_count(api) == 0


async def test_unknown_village_code_is_refused(api: Api) -> None:
    # A key is bound to a known village, so an unknown code is another village: 403.
    answer = await send_json(api, [worker(81)], village="99.99.99.9999")
    assert_problem(answer, 403, "unknown village")


# --- uploads ------------------------------------------------------------------------------------


async def test_csv_upload_with_indonesian_headers(api: Api) -> None:
    woman = nik(1, 2, 1990, 90, female=True)
    lines = [
        "No. NIK;Nama Lengkap;Tgl Lahir;Jenis Kelamin;Jabatan;No HP;Penghasilan",
        f"{nik(15, 5, 1985, 91)};Ahmad Yani;15/05/1985;Laki-laki;Perangkat Desa;0812345678;"
        "1.500.000",
        f"{woman};Siti Rahma, S.Pd;01-02-1990;Perempuan;Guru Ngaji;;",
        f"{nik(15, 5, 1985, 92)};Tanpa Kategori;15/05/1985;L;Tukang Ojek;;",
        "",
        f"{nik(15, 5, 1985, 93)};Petani;15.05.1985;L;Petani Sawit;;",
    ]
    data = ("\r\n".join(lines) + "\r\n").encode()
    result = ok(await upload(api, data, "daftar-embawang.csv", "text/csv"))
    # Row numbers are the sheet's: the header is row 1, the blank row 5 is counted.
    assert [a["row"] for a in result["accepted"]] == [2, 3, 6]
    (refused,) = result["rejected"]
    assert refused["row"] == 4
    assert [e["field"] for e in refused["errors"]] == ["category"]
    page = await api.http.get(
        "/v1/enrollments",
        params={"program": api.program.code, "category": "guru_ngaji"},
        headers=api.auth("auditor"),
    )
    (siti,) = page.json()["items"]
    assert (siti["full_name"], siti["nik_masked"]) == ("Siti Rahma, S.Pd", f"{woman[:6]}********90")


async def test_xlsx_upload_from_the_template(api: Api) -> None:
    template = await api.http.get(
        "/v1/nominations/template.xlsx", headers=api.auth("village_operator")
    )
    workbook = openpyxl.load_workbook(io.BytesIO(template.content))
    sheet = workbook["Nominasi"]
    # Typed over the example row and below it, as a village would (the template formats 1,000
    # rows, so openpyxl's append would land below them).
    rows: list[list[Any]] = [
        [nik(15, 5, 1985, 100), "Budi", "1985-05-15", "L", "linmas", "081299887766", 1_000_000],
        [nik(15, 5, 1985, 101), "Joko", "15/05/1985", "Laki-laki", "RT/RW", None, None],
        [nik(15, 5, 1985, 102), "Salah", "1985-05-15", "X", "linmas", None, None],
    ]
    for number, values in enumerate(rows, start=2):
        for column, value in enumerate(values, start=1):
            sheet.cell(row=number, column=column, value=value)
    buffer = io.BytesIO()
    workbook.save(buffer)
    result = ok(await upload(api, buffer.getvalue(), "daftar.xlsx", XLSX))
    assert [a["row"] for a in result["accepted"]] == [2, 3]
    (refused,) = result["rejected"]
    assert (refused["row"], [e["field"] for e in refused["errors"]]) == (4, ["gender"])
    assert result["warnings"] == []
    assert await enrollment_count(api) == 2


async def test_xlsx_with_indonesian_headers_and_the_village_in_the_file(api: Api) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Kode Desa", "NIK", "Nama", "Tanggal Lahir", "L/P", "Kategori"])
    sheet.append([VILLAGE, nik(15, 5, 1985, 110), "Andi", "1985-05-15", "L", "Operator Desa"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    # No village_code form field: the file's column says which village.
    result = ok(await upload(api, buffer.getvalue(), "d.xlsx", XLSX, village=None))
    assert [a["row"] for a in result["accepted"]] == [2]
    # The form and the file disagree: 422 naming village_code.
    answer = await upload(api, buffer.getvalue(), "d.xlsx", XLSX, village=OTHER_VILLAGE)
    problem = assert_problem(answer, 422, "form and file disagree")
    assert [e["field"] for e in problem["errors"]] == ["village_code"]


async def test_unreadable_uploads_are_422_naming_the_file(api: Api) -> None:
    cases = [
        (b"", "empty.csv", "text/csv"),
        (b"\xd0\xcf\x11\xe0" + b"\x00" * 600, "old.xls", "application/vnd.ms-excel"),
        (b"PK\x03\x04 not a zip at all" * 10, "broken.xlsx", XLSX),
        (b"nik,nama\r\n1,2\r\n", "missing-columns.csv", "text/csv"),
    ]
    for data, filename, content_type in cases:
        answer = await upload(api, data, filename, content_type)
        problem = assert_problem(answer, 422, filename)
        assert [e["field"] for e in problem["errors"]] == ["file"]
    no_file = await api.http.post(
        url(api),
        data={"village_code": VILLAGE},
        files={"other": ("x.csv", b"x", "text/csv")},
        headers=api.auth("village_operator"),
    )
    problem = assert_problem(no_file, 422, "no file field")
    assert [e["field"] for e in problem["errors"]] == ["file"]
    assert await enrollment_count(api) == 0


async def test_template_is_an_xlsx_for_every_key(api: Api) -> None:
    template = build_template()
    for who in ("village_operator", "auditor", "admin"):
        answer = await api.http.get("/v1/nominations/template.xlsx", headers=api.auth(who))
        assert answer.status_code == 200
        assert answer.headers["content-type"] == XLSX
        assert "attachment" in answer.headers["content-disposition"]
        assert answer.content.startswith(b"PK")
        assert answer.content[:4] == template[:4]
    workbook = openpyxl.load_workbook(io.BytesIO(answer.content))
    assert workbook.sheetnames == ["Nominasi", "Kategori"]


@asynccontextmanager
async def unsandboxed(api: Api) -> AsyncIterator[Api]:
    """The API on the rig's server and database, with a worker of its own on its own task queue
    that runs workflows unsandboxed, as production's workers do. The sandbox re-imports the
    workflow module for every workflow it loads (about three quarters of the time of a list of
    1,000 on the rig's sandboxed worker); every other test here runs sandboxed."""
    settings = api.settings.model_copy(update={"task_queue": f"bulk-{uuid.uuid4().hex[:8]}"})
    app = create_app(settings)
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        bulk_worker = build_worker(
            api.rig.client,
            settings,
            engine=api.engine,
            adapter=api.rig.sim.adapter,
            executor=executor,
            sandboxed=False,
        )
        async with bulk_worker, app.router.lifespan_context(app):
            state: AppState = app.state.rentan
            state._client = api.rig.client
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://rentan") as http:
                yield Api(app, http, api.rig, api.program, api.keys)


async def test_a_thousand_rows_are_answered_each_with_its_row_number(api: Api) -> None:
    # More than LIST_CHUNK rows: the list is taken by several batch workflows, and every row
    # comes back, each with its own number and its own person.
    count = 1000
    assert count > LIST_CHUNK
    workers = [
        worker(serial, category=("linmas", "bpd", "rt_rw", "guru_ngaji")[serial % 4])
        for serial in range(1, count + 1)
    ]
    async with unsandboxed(api) as bulk:
        started = time.perf_counter()
        answer = await send_json(bulk, workers)
        elapsed = time.perf_counter() - started
    result = ok(answer)
    print(f"\n{count:,}-row JSON nomination list answered in {elapsed:.2f}s")
    assert result["rejected"] == []
    assert [a["row"] for a in result["accepted"]] == list(range(1, count + 1))
    assert [a["nik_masked"] for a in result["accepted"]] == [mask(str(w["nik"])) for w in workers]
    assert {a["state"] for a in result["accepted"]} == {"nominated"}
    assert len({a["enrollment_id"] for a in result["accepted"]}) == count
    report = await api.http.get(
        "/v1/reports/coverage",
        params={"program": api.program.code, "group_by": "category"},
        headers=api.auth("auditor"),
    )
    assert report.json()["total_enrollments"] == count
    assert {line["key"]: line["enrollments"] for line in report.json()["lines"]} == {
        "linmas": 250,
        "bpd": 250,
        "rt_rw": 250,
        "guru_ngaji": 250,
    }


# --- the request log ----------------------------------------------------------------------------


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """configure_logging runs once per process: let the test run it again (in its body, where
    sys.stderr is the one capsys reads), then put back what was before."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_structlog = structlog.get_config()
    saved_flag = core.logs._configured
    core.logs._configured = False
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    structlog.configure(**saved_structlog)
    core.logs._configured = saved_flag
    root.handlers[:], level = saved_root
    root.setLevel(level)


def log_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


async def test_one_log_line_per_request_and_no_nik_in_clear(
    api: Api, fresh_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level="INFO", fmt="json")
    niks = [nik(15, 5, 1985, 120), nik(15, 5, 1985, 121)]
    workers: list[dict[str, Any]] = [
        worker(120),
        worker(121),
        {**worker(122), "nik": niks[0]},
        {"nik": niks[1] + "9"},
    ]
    answer = await send_json(api, workers)
    result = ok(answer)
    (enrollment, *_) = result["accepted"]
    csv = "nik,full_name,birth_date,gender,category\r\n" + f"{niks[0]},Lagi,1985-05-15,L,bpd\r\n"
    await upload(api, csv.encode(), "d.csv", "text/csv")
    await api.http.get(
        f"/v1/enrollments/{enrollment['enrollment_id']}", headers=api.auth("auditor")
    )
    await api.http.get("/v1/enrollments", headers={"Authorization": "Bearer nope"})

    captured = capsys.readouterr()
    err = captured.err
    for number in niks:
        assert number not in captured.err + captured.out
    requests = [line for line in log_lines(err) if line.get("event") == "request"]
    assert [(r["route"], r["status"]) for r in requests] == [
        ("/v1/programs/{code}/nominations", 200),
        ("/v1/programs/{code}/nominations", 200),
        ("/v1/enrollments/{enrollment_id}", 200),
        ("/v1/enrollments", 401),
    ]
    for line in requests:
        assert {"request_id", "actor", "role", "route", "status", "duration_ms"} <= set(line)
        assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
        assert len(line["request_id"]) >= 8
    assert len({r["request_id"] for r in requests}) == 4
    assert (requests[0]["actor"], requests[0]["role"]) == (
        "test-village_operator",
        "village_operator",
    )
    assert (requests[2]["actor"], requests[2]["role"]) == ("test-auditor", "auditor")
    assert requests[2]["enrollment_id"] == enrollment["enrollment_id"]
    assert (requests[3]["actor"], requests[3]["role"]) == (None, None)


async def test_nomination_list_is_logged_with_its_request_id(
    api: Api, fresh_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level="INFO", fmt="json")
    ok(await send_json(api, [worker(125), {"nik": "1"}]))
    lines = log_lines(capsys.readouterr().err)
    (request,) = [line for line in lines if line.get("event") == "request"]
    processed = [line for line in lines if line.get("event") == "nomination list processed"]
    assert [(p["request_id"], p["accepted"], p["rejected"]) for p in processed] == [
        (request["request_id"], 1, 1)
    ]


async def test_request_id_is_echoed(api: Api) -> None:
    answer = await api.http.get(
        "/v1/programs", headers={**api.auth("auditor"), "X-Request-ID": "trace-123"}
    )
    assert answer.headers["x-request-id"] == "trace-123"
    generated = await api.http.get("/v1/programs", headers=api.auth("auditor"))
    assert len(generated.headers["x-request-id"]) >= 8

"""A first walk through the API: one enrollment from a JSON list to active, as each role."""

from __future__ import annotations

import datetime as dt

from tests.api.conftest import Api
from tests.harness import VILLAGE, nik


async def test_enrollment_walks_from_json_nomination_to_active(api: Api) -> None:
    body = {
        "village_code": VILLAGE,
        "workers": [
            {
                "nik": nik(15, 5, 1985, 11),
                "full_name": "Budi Santoso",
                "birth_date": "1985-05-15",
                "gender": "L",
                "category": "linmas",
            },
            {"nik": "123", "full_name": "", "birth_date": "1985-13-40", "gender": "X"},
        ],
    }
    answer = await api.http.post(
        f"/v1/programs/{api.program.code}/nominations",
        json=body,
        headers=api.auth("village_operator"),
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert [r["row"] for r in result["accepted"]] == [1]
    (rejected,) = result["rejected"]
    assert rejected["row"] == 2
    assert {e["field"] for e in rejected["errors"]} >= {"nik", "full_name", "birth_date", "gender"}
    enrollment_id = result["accepted"][0]["enrollment_id"]

    verified = await api.http.post(
        f"/v1/enrollments/{enrollment_id}/verification",
        json={"approve": True, "reason": "ok"},
        headers=api.auth("dpmd_verifier"),
    )
    assert verified.json() == {"enrollment_id": enrollment_id, "state": "verified"}
    funded = await api.http.post(
        f"/v1/programs/{api.program.code}/budget-approvals",
        json={"funding_source": "APBD", "village_code": VILLAGE},
        headers=api.auth("budget_officer"),
    )
    assert funded.status_code == 200, funded.text
    assert funded.json()["committed_idr"] == 16_800 * 3

    for _ in range(50):
        detail = (
            await api.http.get(f"/v1/enrollments/{enrollment_id}", headers=api.auth("auditor"))
        ).json()
        if detail["state"] == "active":
            break
        await api.env.sleep(dt.timedelta(seconds=2))
    assert detail["state"] == "active"
    assert detail["kpj_number"]

    history = await api.http.get(
        f"/v1/enrollments/{enrollment_id}/history", headers=api.auth("auditor")
    )
    assert history.status_code == 200, history.text
    actions = [e["action"] for e in history.json()["events"]]
    assert "verified" in actions and "activated" in actions
    assert any(a.startswith("activity_scheduled:register_participant") for a in actions)

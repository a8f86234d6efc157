"""No database work on the API's event loop: a statement run there stalls every other request
(a batch of 5,000 refused ids wrote 5,000 rows, one by one, on the loop).

A listener on the API's engine notes every statement executed on a thread that runs an event
loop; the batch routes, the list upload and the single steps must leave it empty.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from tests.api.conftest import Api
from tests.api.test_auth_and_roles import worker
from tests.harness import VILLAGE


@pytest.fixture
def on_loop(api: Api) -> Iterator[list[str]]:
    engine = api.app.state.rentan.engine
    seen: list[str] = []

    def noted(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # a worker thread: fine
        seen.append(statement.split("\n")[0][:120])

    event.listen(engine, "before_cursor_execute", noted)
    yield seen
    event.remove(engine, "before_cursor_execute", noted)


async def test_batch_routes_and_steps_keep_the_database_off_the_event_loop(
    api: Api, on_loop: list[str]
) -> None:
    code = api.program.code
    nominated = await api.http.post(
        f"/v1/programs/{code}/nominations",
        json={"village_code": VILLAGE, "workers": [worker(701), worker(702)]},
        headers=api.auth("village_operator"),
    )
    assert nominated.status_code == 200, nominated.text
    ids = [a["enrollment_id"] for a in nominated.json()["accepted"]]
    unknown = [f"enr_{uuid.uuid4().hex[:24]}" for _ in range(4_998)]
    batch = await api.http.post(
        f"/v1/programs/{code}/verifications",
        json={"enrollment_ids": [*ids, *unknown], "approve": True},
        headers=api.auth("dpmd_verifier"),
    )
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["ok"] for r in results[:2]] == [True, True]
    assert sum(not r["ok"] for r in results) == 4_998
    approval = await api.http.post(
        f"/v1/programs/{code}/budget-approvals",
        json={"funding_source": "APBD", "village_code": VILLAGE},
        headers=api.auth("budget_officer"),
    )
    assert approval.status_code in (200, 409), approval.text
    again = await api.http.post(
        f"/v1/enrollments/{ids[0]}/verification",
        json={"approve": True},
        headers=api.auth("dpmd_verifier"),
    )
    assert again.status_code == 409  # verified already: refused, and the refusal audited
    for path in (f"/v1/enrollments/{ids[0]}", f"/v1/enrollments?program={code}"):
        assert (await api.http.get(path, headers=api.auth("auditor"))).status_code == 200
    assert on_loop == []

"""rentan's side of the bench: the cohort through the API, as the regency's people would send it.

Per village list, in turn: the village operator posts the list (its own key), the DPMD verifier
verifies the village's nominated enrollments in one batch call, the budget officer commits the
village's premiums per funding source; several villages are in flight at once. Each call runs
as a durable batch workflow and answers once its records are written. The workflows then
register with the BPJS simulator on their own; the run ends when every enrollment is active.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Iterable

import httpx
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from domain.categories import VILLAGE_WORKERS, Category
from models.tables import Enrollment
from rentan import cohort
from services.keys import Role, create_key

REQUEST_TIMEOUT_S = 600.0
APBD, DBH_SAWIT = "APBD", "DBH_SAWIT"


class BenchFailed(RuntimeError):
    """The API refused something the benchmark needs: the figures would be meaningless."""


def program_body(code: str, start: dt.date, end: dt.date, size: int) -> dict[str, object]:
    # Ceilings far above the cohort's premiums: the budget check runs, it never refuses.
    ceiling = size * 1_000_000
    return {
        "code": code,
        "name": f"Benchmark {code}",
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "max_age": 60,
        "renewal_lead_days": 14,
        "funding_sources": [
            {
                "code": APBD,
                "name": "APBD",
                "ceiling_idr": ceiling,
                "categories": sorted(c.value for c in VILLAGE_WORKERS),
            },
            {
                "code": DBH_SAWIT,
                "name": "DBH Sawit",
                "ceiling_idr": ceiling,
                "categories": [Category.PETANI_SAWIT.value],
            },
        ],
    }


def village_operator_keys(engine: Engine, villages: Iterable[str]) -> dict[str, str]:
    """One operator key per village, as the admin hands them out with ``rentan keys create``."""
    return {
        code: create_key(
            engine, role=Role.VILLAGE_OPERATOR, name=f"bench-operator-{code}", village_code=code
        )
        for code in sorted(set(villages))
    }


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _all_ok(body: dict[str, object], what: str) -> None:
    results = body["results"]
    assert isinstance(results, list)
    refused = [r for r in results if not r["ok"]]
    if refused:
        raise BenchFailed(f"{what}: refused: {refused!r:.500}")


def _check(response: httpx.Response, what: str) -> dict[str, object]:
    if response.status_code >= 400:
        raise BenchFailed(f"{what}: HTTP {response.status_code} {response.text[:500]}")
    body: dict[str, object] = response.json()
    return body


@dataclasses.dataclass
class ApiDriver:
    http: httpx.AsyncClient
    role_keys: dict[str, str]
    operator_keys: dict[str, str]

    async def create_program(self, body: dict[str, object]) -> None:
        response = await self.http.post(
            "/v1/programs", json=body, headers=_bearer(self.role_keys[Role.ADMIN.value])
        )
        _check(response, f"creating program {body['code']}")

    async def nominate(self, program: str, item: cohort.VillageList) -> list[str]:
        """The list's enrollment ids in row order; any rejected row fails the bench."""
        response = await self.http.post(
            f"/v1/programs/{program}/nominations",
            json={
                "village_code": item.village.code,
                "workers": [dataclasses.asdict(row) for row in item.rows],
            },
            headers=_bearer(self.operator_keys[item.village.code]),
        )
        body = _check(response, f"nominating village {item.village.code}")
        if body["rejected"]:
            raise BenchFailed(
                f"village {item.village.code}: rows rejected: {body['rejected']!r:.500}"
            )
        accepted = body["accepted"]
        assert isinstance(accepted, list)
        return [a["enrollment_id"] for a in sorted(accepted, key=lambda a: a["row"])]

    async def verify_village(self, program: str, village_code: str) -> None:
        """The village's nominated enrollments in one batch."""
        response = await self.http.post(
            f"/v1/programs/{program}/verifications",
            json={"village_code": village_code, "approve": True, "reason": "matches DPMD records"},
            headers=_bearer(self.role_keys[Role.DPMD_VERIFIER.value]),
        )
        _all_ok(_check(response, f"verifying village {village_code}"), village_code)

    async def approve(self, program: str, source: str, enrollment_ids: list[str]) -> None:
        """Commit the premiums from ``source``, all or nothing."""
        response = await self.http.post(
            f"/v1/programs/{program}/budget-approvals",
            json={
                "funding_source": source,
                "enrollment_ids": enrollment_ids,
                "reason": "APBD/DBH allocation",
            },
            headers=_bearer(self.role_keys[Role.BUDGET_OFFICER.value]),
        )
        _all_ok(_check(response, f"committing {source} budget"), source)

    async def verify_one(self, enrollment_id: str) -> bool:
        response = await self.http.post(
            f"/v1/enrollments/{enrollment_id}/verification",
            json={"approve": True, "reason": "matches DPMD records"},
            headers=_bearer(self.role_keys[Role.DPMD_VERIFIER.value]),
        )
        return response.status_code == 200

    async def read_history(self, enrollment_id: str) -> bool:
        response = await self.http.get(
            f"/v1/enrollments/{enrollment_id}/history",
            headers=_bearer(self.role_keys[Role.AUDITOR.value]),
        )
        return response.status_code == 200 and bool(response.json()["events"])

    async def lifecycle(self, program: str, item: cohort.VillageList) -> list[str]:
        """A village list from nomination to budget; registration follows in the workflows."""
        ids = await self.nominate(program, item)
        await self.verify_village(program, item.village.code)
        # A desa's list may hold palm-oil farmers too: DBH Sawit pays for them, APBD for the rest.
        by_source: dict[str, list[str]] = {}
        for row, enrollment_id in zip(item.rows, ids, strict=True):
            source = DBH_SAWIT if row.category == Category.PETANI_SAWIT.value else APBD
            by_source.setdefault(source, []).append(enrollment_id)
        for source, source_ids in sorted(by_source.items()):
            await self.approve(program, source, source_ids)
        return ids


def count_in_state(engine: Engine, program: str, state: str) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count())
            .select_from(Enrollment)
            .where(Enrollment.program_code == program, Enrollment.state == state)
        ).one()


async def wait_for_count(engine: Engine, program: str, state: str, expected: int) -> None:
    # The projection is another process's database: polling is the only way to see it fill.
    while await asyncio.to_thread(count_in_state, engine, program, state) < expected:  # noqa: ASYNC110
        await asyncio.sleep(0.25)

"""Scenario 4: 50 concurrent budget approvals race for a ceiling that fits 20 (PostgreSQL).

A program whose APBD ceiling holds exactly 20 premiums, 50 verified enrollments, and 50
budget-approval requests fired at once (one enrollment each), spread over two API processes so
the race is between processes and database connections, not inside one event loop. Exactly 20
must be answered 200 and 30 answered 409 with the shortfall; the committed amount the API
reports, the funding source row and the sum of the ``budget_ledger`` rows read with SQL must
all equal 20 premiums, never more (invariant 4). The 20 funded enrollments then register once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from domain.premium import period_premium
from tests.reliability.conftest import Record, StackFactory
from tests.reliability.stack import program_period, village_lists

pytestmark = [pytest.mark.reliability, pytest.mark.stack, pytest.mark.postgres]

PROGRAM = "REL-RACE"
ENROLLMENTS = 50
FITS = 20


async def test_fifty_approvals_racing_one_ceiling_commit_exactly_what_fits(
    stack_factory: StackFactory, pg_database_url: str, record: Record
) -> None:
    began = time.monotonic()
    start, end = program_period()
    premium = period_premium(1_000_000, start, end)
    ceiling = FITS * premium
    lists = village_lists(ENROLLMENTS, villages=2, seed=44)
    stack = stack_factory(database_url=pg_database_url, apis=2)
    assert stack.database_url.startswith("postgresql://")
    keys = stack.make_keys(lists)
    stack.create_program(keys, PROGRAM, ceiling_idr=ceiling)
    accepted, _ = stack.nominate_all(keys, PROGRAM, lists)
    for village in lists:
        assert all(r["ok"] for r in stack.verify_village(keys, PROGRAM, village))
    enrollments = stack.enrollments(keys.auditor, PROGRAM)
    assert Counter(e["state"] for e in enrollments) == {"verified": ENROLLMENTS}
    assert {e["premium_idr"] for e in enrollments} == {premium}
    ids = sorted(accepted.values())

    urls = stack.api_urls()
    limits = httpx.Limits(max_connections=ENROLLMENTS, max_keepalive_connections=ENROLLMENTS)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def approve(number: int, enrollment_id: str) -> httpx.Response:
            return await client.post(
                f"{urls[number % len(urls)]}/v1/programs/{PROGRAM}/budget-approvals",
                headers=stack.auth(keys.budget),
                json={"funding_source": "APBD", "enrollment_ids": [enrollment_id]},
            )

        racing = time.monotonic()
        responses = await asyncio.gather(*(approve(n, i) for n, i in enumerate(ids)))
        race_s = time.monotonic() - racing

    statuses = Counter(r.status_code for r in responses)
    approved = sorted(i for i, r in zip(ids, responses, strict=True) if r.status_code == 200)
    refused = [r for r in responses if r.status_code == 409]
    program = stack.call("GET", f"/v1/programs/{PROGRAM}", keys.auditor).json()
    (source,) = program["funding_sources"]
    ledger = stack.ledger(PROGRAM)
    source_row = stack.sql(
        "SELECT ceiling_idr, committed_idr FROM fundingsource WHERE program_code = :p",
        p=PROGRAM,
    )
    ledger_sum = sum(row[3] for row in ledger)
    after = Counter(e["state"] for e in stack.enrollments(keys.auditor, PROGRAM))

    # The 20 funded ones go on to BPJS, once each.
    settled = stack.wait_settled(keys.auditor, PROGRAM, expected=FITS, timeout_s=90)
    sim = stack.sim_counts()
    record(
        "budget_race_postgresql",
        {
            "database": "postgresql",
            "api_processes": len(urls),
            "enrollments_verified": ENROLLMENTS,
            "premium_idr": premium,
            "ceiling_idr": ceiling,
            "approvals_fired": len(responses),
            "answered": {str(k): v for k, v in sorted(statuses.items())},
            "committed_idr_api": source["committed_idr"],
            "committed_idr_row": source_row[0][1],
            "ledger_rows": len(ledger),
            "ledger_sum_idr": ledger_sum,
            "overspent_idr": max(0, ledger_sum - ceiling),
            "states_after_race": dict(after),
            "states_settled": dict(settled),
            "bpjs_registrations": sim["total"],
            "bpjs_max_per_person": sim["max_per_person"],
            "race_s": round(race_s, 2),
            "startup_s": stack.timings["startup_s"],
            "total_s": round(time.monotonic() - began, 1),
        },
    )
    assert statuses == {200: FITS, 409: ENROLLMENTS - FITS}, statuses
    for response in refused:
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 409
        assert problem["requested_idr"] == premium
        assert problem["shortfall_idr"] > 0
        assert problem["remaining_idr"] == premium - problem["shortfall_idr"]
    for response in responses:
        if response.status_code == 200:
            (result,) = response.json()["results"]
            assert result["ok"], result
    assert source["committed_idr"] == ceiling == FITS * premium
    assert source["remaining_idr"] == 0
    assert source_row == [(ceiling, ceiling)]
    assert ledger_sum == ceiling
    assert [row[2] for row in ledger] == ["commit"] * FITS
    assert sorted(row[1] for row in ledger) == approved
    assert after["verified"] == ENROLLMENTS - FITS
    assert settled == {"active": FITS, "verified": ENROLLMENTS - FITS}
    assert sim["total"] == FITS and sim["max_per_person"] == 1

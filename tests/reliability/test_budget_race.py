"""Scenario 4: budget approvals race across two API processes on PostgreSQL (invariant 4).

A program whose APBD ceiling holds exactly 20 premiums and 30 verified enrollments. At once,
spread over two API processes (so the race is between processes and database connections): a
batch approval of the first 12, a single approval of every one of the 30, and a second batch of
the last 12. Whatever wins, no enrollment is funded twice, nothing beyond the ceiling is
committed, each funded enrollment's workflow holds the one commitment the ledger has open for
it, the ledger equals the premiums of the funded enrollments, every refusal is a 409 that says
why, the funded register at BPJS once, and ``rentan reconcile --check`` finds no difference.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from domain.premium import period_premium
from tests.reliability.conftest import Record
from tests.reliability.stack import Stack, program_period, village_lists

pytestmark = [pytest.mark.reliability, pytest.mark.stack, pytest.mark.postgres]

PROGRAM = "REL-RACE"
ENROLLMENTS = 30
FITS = 20


async def test_batch_and_single_approvals_racing_one_ceiling_fund_each_once(
    postgres_stack: Stack, record: Record
) -> None:
    stack = postgres_stack
    stack.reset_sim()
    began = time.monotonic()
    start, end = program_period()
    premium = period_premium(1_000_000, start, end)
    ceiling = FITS * premium
    lists = village_lists(ENROLLMENTS, villages=2, seed=44)
    assert stack.database_url.startswith("postgresql")
    keys = stack.make_keys(lists)
    stack.create_program(keys, PROGRAM, ceiling_idr=ceiling)
    stack.nominate_all(keys, PROGRAM, lists)
    for village in lists:
        assert all(r["ok"] for r in stack.verify_village(keys, PROGRAM, village))
    enrollments = stack.enrollments(keys.auditor, PROGRAM)
    assert Counter(e["state"] for e in enrollments) == {"verified": ENROLLMENTS}
    ids = sorted(e["id"] for e in enrollments)
    requests = [ids[:12], *([i] for i in ids), ids[-12:]]

    urls = stack.api_urls()
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def approve(number: int, batch: list[str]) -> httpx.Response:
            return await client.post(
                f"{urls[number % len(urls)]}/v1/programs/{PROGRAM}/budget-approvals",
                headers=stack.auth(keys.budget),
                json={"funding_source": "APBD", "enrollment_ids": batch},
            )

        racing = time.monotonic()
        responses = await asyncio.gather(*(approve(n, b) for n, b in enumerate(requests)))
        race_s = time.monotonic() - racing
    answered_at = time.monotonic()

    statuses = Counter(r.status_code for r in responses)
    program = stack.call("GET", f"/v1/programs/{PROGRAM}", keys.auditor).json()
    (source,) = program["funding_sources"]
    commitments = stack.open_commitments(PROGRAM)
    ledger_sum = sum(row[2] for row in commitments)
    funded = {row[1] for row in commitments}
    settled = stack.wait_settled(keys.auditor, PROGRAM, expected=len(funded), timeout_s=90)
    reconciled = stack.reconcile_until_clean(PROGRAM, since=answered_at)
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
            "batches_fired": 2,
            "answered": {str(k): v for k, v in sorted(statuses.items())},
            "enrollments_funded": len(funded),
            "open_commitments": len(commitments),
            "committed_idr_api": source["committed_idr"],
            "ledger_sum_idr": ledger_sum,
            "overspent_idr": max(0, ledger_sum - ceiling),
            "states_settled": dict(settled),
            "bpjs_registrations": sim["total"],
            "bpjs_max_per_person": sim["max_per_person"],
            "race_s": round(race_s, 2),
            "total_s": round(time.monotonic() - began, 1),
            **reconciled,
        },
    )
    assert set(statuses) <= {200, 409}, statuses
    for response in responses:
        if response.status_code == 409:
            assert response.headers["content-type"].startswith("application/problem+json")
            detail = response.json()["detail"]
            why = ("remains", "already funded", "funded already", "not awaiting budget")
            assert any(reason in detail for reason in why), detail
        else:
            assert all(r["ok"] for r in response.json()["results"]), response.json()
    approved = {
        i
        for batch, r in zip(requests, responses, strict=True)
        if r.status_code == 200
        for i in batch
    }
    assert approved == funded  # what was answered funded is what the ledger holds
    assert len(commitments) == len(funded)  # one open commitment per funded enrollment
    assert ledger_sum == len(funded) * premium == source["committed_idr"] <= ceiling
    assert len(funded) == FITS  # the ceiling fills up: 20 of 30 funded, never more
    assert settled == {"active": FITS, "verified": ENROLLMENTS - FITS}
    assert sim["total"] == FITS and sim["max_per_person"] == 1

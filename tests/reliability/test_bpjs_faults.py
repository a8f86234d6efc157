"""Scenario 1: BPJS fails often and transiently; every enrollment still ends active, once.

The simulator answers 30% of registration calls 503 and 5% 429 (Retry-After 1 s), with a fixed
seed. A cohort nominated through the API by four village operators, verified and funded village
by village, must end with every enrollment active, exactly one BPJS registration per person
and no registration of anybody else (invariants 1 and 3).
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.conftest import Record, StackFactory
from tests.reliability.stack import (
    assert_exactly_once,
    exactly_once_figures,
    registration_attempts,
    village_lists,
)

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

COHORT = 80
PROGRAM = "REL-FAULTS"
FAULT_RATE = 0.3
THROTTLE_RATE = 0.05
SEED = 1603


def test_transient_bpjs_faults_end_with_everyone_active_exactly_once(
    stack_factory: StackFactory, record: Record
) -> None:
    began = time.monotonic()
    stack = stack_factory(
        sim_args=[
            "--fault-rate",
            str(FAULT_RATE),
            "--throttle-rate",
            str(THROTTLE_RATE),
            "--seed",
            str(SEED),
        ]
    )
    lists = village_lists(COHORT, villages=4, seed=11)
    keys = stack.make_keys(lists)
    keys.auditor = stack.key_via_cli("auditor")  # as an operator creates one: `rentan keys`
    stack.create_program(keys, PROGRAM, ceiling_idr=10**12)

    accepted, resent = stack.nominate_all(keys, PROGRAM, lists)
    assert len(accepted) == COHORT
    for village in lists:
        results = stack.verify_village(keys, PROGRAM, village)
        assert all(r["ok"] for r in results), results
    funded_at = time.monotonic()
    for village in lists:
        approval = stack.approve_village(keys, PROGRAM, village)
        assert all(r["ok"] for r in approval["results"]), approval

    stack.wait_settled(keys.auditor, PROGRAM, expected=COHORT, timeout_s=150)
    registration_s = time.monotonic() - funded_at
    figures = exactly_once_figures(stack, keys, PROGRAM, accepted)
    faults = stack.sim_faults()
    chain = stack.audit_verify(keys)
    attempts = registration_attempts(stack, PROGRAM)
    stack.check_alive()
    record(
        "bpjs_faults",
        {
            **figures,
            **attempts,
            "fault_rate": FAULT_RATE,
            "throttle_rate": THROTTLE_RATE,
            "seed": SEED,
            "faults_injected": faults["injected"],
            "faults_injected_total": sum(faults["injected"].values()),
            "rows_sent_again": resent,
            "audit_chain": chain,
            "startup_s": stack.timings["startup_s"],
            "registration_s": round(registration_s, 1),
            "total_s": round(time.monotonic() - began, 1),
        },
    )
    assert_exactly_once(figures)
    assert faults["injected"]["503"] > 0 and faults["injected"]["429"] > 0, faults
    assert chain["ok"], chain
    assert attempts["registrations_retried"] > 0, attempts

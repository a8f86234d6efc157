"""Scenario 1: BPJS fails often and transiently; every enrollment still ends active, once.

The simulator answers 30% of registration calls 503 and 5% 429 (Retry-After 1 s), with a fixed
seed. A cohort nominated through the API by four village operators, verified and funded village
by village, must end with every enrollment active, exactly one BPJS registration per person and
no registration of anybody else (invariants 1 and 3), and ``rentan reconcile --check`` finding
no difference between the projection and the workflows.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.conftest import Record
from tests.reliability.stack import (
    Stack,
    assert_exactly_once,
    exactly_once_figures,
    registration_attempts,
    village_lists,
)

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

COHORT = 40
PROGRAM = "REL-FAULTS"
FAULT_RATE = 0.3
THROTTLE_RATE = 0.05
SEED = 1603


def test_transient_bpjs_faults_end_with_everyone_active_exactly_once(
    stack: Stack, record: Record
) -> None:
    began = time.monotonic()
    stack.set_faults(fault_rate=FAULT_RATE, throttle_rate=THROTTLE_RATE, seed=SEED)
    lists = village_lists(COHORT, villages=4, seed=11)
    keys = stack.make_keys(lists)
    keys.auditor = stack.key_via_cli("auditor")  # as an operator creates one: `rentan keys`
    stack.create_program(keys, PROGRAM, ceiling_idr=10**12)

    accepted = stack.nominate_all(keys, PROGRAM, lists)
    assert len(accepted) == COHORT
    for village in lists:
        results = stack.verify_village(keys, PROGRAM, village)
        assert all(r["ok"] for r in results), results
    funded_at = time.monotonic()
    for village in lists:
        approval = stack.approve_village(keys, PROGRAM, village)
        assert all(r["ok"] for r in approval["results"]), approval

    stack.wait_settled(keys.auditor, PROGRAM, expected=COHORT, timeout_s=150)
    settled_at = time.monotonic()
    figures = exactly_once_figures(stack, keys, PROGRAM, accepted)
    faults = stack.sim_faults()
    chain = stack.audit_verify(keys)
    attempts = registration_attempts(stack, PROGRAM)
    reconciled = stack.reconcile_until_clean(PROGRAM, since=settled_at)
    record(
        "bpjs_faults",
        {
            **figures,
            **attempts,
            **reconciled,
            "fault_rate": FAULT_RATE,
            "throttle_rate": THROTTLE_RATE,
            "seed": SEED,
            "faults_injected": faults["injected"],
            "faults_injected_total": sum(faults["injected"].values()),
            "audit_chain": chain,
            "registration_s": round(settled_at - funded_at, 1),
            "total_s": round(time.monotonic() - began, 1),
        },
    )
    assert_exactly_once(figures)
    assert faults["injected"]["503"] > 0 and faults["injected"]["429"] > 0, faults
    assert chain["ok"], chain
    assert attempts["registrations_retried"] > 0, attempts

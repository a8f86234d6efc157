"""The enrollment lifecycle: its states and which transitions are allowed.

The workflow's Update validators and the API both ask ``can_move`` so a refused step is refused
for the same reason everywhere.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    NOMINATED = "nominated"
    VERIFIED = "verified"
    REJECTED = "rejected"
    BUDGET_APPROVED = "budget_approved"
    REGISTERING = "registering"
    REGISTRATION_FAILED = "registration_failed"
    ALREADY_COVERED = "already_covered"
    ACTIVE = "active"
    RENEWAL_PENDING = "renewal_pending"
    LAPSED = "lapsed"
    WITHDRAWN = "withdrawn"
    TERMINATED = "terminated"
    EXPIRED = "expired"


S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    S.NOMINATED: frozenset({S.VERIFIED, S.REJECTED, S.WITHDRAWN, S.EXPIRED}),
    S.VERIFIED: frozenset({S.BUDGET_APPROVED, S.WITHDRAWN}),
    S.BUDGET_APPROVED: frozenset({S.REGISTERING, S.WITHDRAWN}),
    S.REGISTERING: frozenset({S.ACTIVE, S.REGISTRATION_FAILED, S.ALREADY_COVERED}),
    S.REGISTRATION_FAILED: frozenset({S.REGISTERING, S.WITHDRAWN}),
    S.ACTIVE: frozenset({S.RENEWAL_PENDING, S.TERMINATED, S.LAPSED}),
    S.RENEWAL_PENDING: frozenset({S.ACTIVE, S.LAPSED, S.TERMINATED}),
    S.REJECTED: frozenset(),
    S.ALREADY_COVERED: frozenset(),
    S.LAPSED: frozenset(),
    S.WITHDRAWN: frozenset(),
    S.TERMINATED: frozenset(),
    S.EXPIRED: frozenset(),
}

FINAL: frozenset[State] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)

# States in which a person holds this period's place: a second nomination is refused.
HOLDS_PERIOD: frozenset[State] = frozenset(State) - {S.REJECTED, S.WITHDRAWN, S.EXPIRED}


def can_move(current: State, target: State) -> bool:
    return target in TRANSITIONS[current]


def refusal(current: State, target: State) -> str | None:
    """Why ``current -> target`` is refused, or None when it is allowed."""
    if can_move(current, target):
        return None
    return f"enrollment is {current.value}; it cannot become {target.value}"

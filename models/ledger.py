"""The budget ledger: each budget approval's commitments against a funding source's ceiling.

A commitment has one owner, the approval that made it, and one key (approval, enrollment). At
most one commitment per enrollment and program is open at a time (a partial unique index), so
two approvals racing for the same person fund them once, whichever funding source each names.
What a source has committed is the sum of its open commitments. Committing locks the source's
row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite write transactions begin IMMEDIATE), so the
ceiling holds however many approvals race. A commitment is released by key, once: by the
workflow that took its approval (withdrawn, registration ended, renewal not taken), or by the
approval itself for an enrollment whose workflow refused it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from domain.records import Commitment as CommitmentRef
from models.tables import Commitment, FundingSource, utcnow

_CHUNK = 500  # enrollments per look-up: well inside every database's bound-parameter limit


class BudgetError(Exception):
    """A commitment cannot be made; nothing was committed.

    BudgetError
    ├── CeilingExceeded   the source's remaining amount is smaller than what is asked
    ├── NotPayable        the source does not exist or does not pay for a category
    └── AlreadyFunded     another approval holds an open commitment for an enrollment
    """


class CeilingExceeded(BudgetError):
    def __init__(self, *, source: str, requested: int, remaining: int) -> None:
        self.source = source
        self.requested = requested
        self.remaining = remaining
        self.shortfall = requested - remaining
        super().__init__(
            f"{source}: requested Rp {requested:,} but only Rp {remaining:,} remains "
            f"(short by Rp {self.shortfall:,})"
        )


class NotPayable(BudgetError):
    pass


class AlreadyFunded(BudgetError):
    def __init__(self, enrollment_ids: Sequence[str]) -> None:
        self.enrollment_ids = list(enrollment_ids)
        super().__init__(
            "already funded by another approval: " + ", ".join(self.enrollment_ids[:20])
        )


@dataclass(frozen=True)
class Claim:
    """One enrollment's share of an approval."""

    enrollment_id: str
    category: str
    amount_idr: int


def lock_source(session: Session, *, program_code: str, code: str) -> FundingSource:
    source = session.exec(
        select(FundingSource)
        .where(FundingSource.program_code == program_code, FundingSource.code == code)
        .with_for_update()
    ).first()
    if source is None:
        raise NotPayable(f"program {program_code} has no funding source {code!r}")
    return source


def committed(session: Session, source_ids: Collection[int]) -> dict[int, int]:
    """What each source has committed: the sum of its open commitments."""
    rows = session.exec(
        select(Commitment.funding_source_id, func.sum(Commitment.amount_idr))
        .where(
            col(Commitment.funding_source_id).in_(list(source_ids)),
            col(Commitment.released_at).is_(None),
        )
        .group_by(col(Commitment.funding_source_id))
    ).all()
    found = {source_id: int(total or 0) for source_id, total in rows}
    return {source_id: found.get(source_id, 0) for source_id in source_ids}


def open_holders(
    session: Session, *, program_code: str, enrollment_ids: Collection[str]
) -> dict[str, str]:
    """Enrollment id -> the approval holding an open commitment for it, for those that have one."""
    ids = list(dict.fromkeys(enrollment_ids))
    holders: dict[str, str] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = session.exec(
            select(Commitment.enrollment_id, Commitment.approval_id).where(
                Commitment.program_code == program_code,
                col(Commitment.enrollment_id).in_(ids[start : start + _CHUNK]),
                col(Commitment.released_at).is_(None),
            )
        ).all()
        holders.update(dict(rows))
    return holders


def made_by(session: Session, approval_id: str) -> list[Commitment]:
    """The commitments an approval made (open or released)."""
    return list(session.exec(select(Commitment).where(Commitment.approval_id == approval_id)))


def commit(
    session: Session,
    *,
    approval_id: str,
    program_code: str,
    source_code: str,
    claims: list[Claim],
    actor: str,
) -> FundingSource:
    """Commit every claim for ``approval_id`` or none (the caller commits the transaction);
    raises ``BudgetError``."""
    source = lock_source(session, program_code=program_code, code=source_code)
    payable = set(source.category_list())
    unpaid = sorted({c.category for c in claims if c.category not in payable})
    if unpaid:
        raise NotPayable(f"{source.code} does not pay for {', '.join(unpaid)}")
    unique = list({c.enrollment_id: c for c in claims}.values())
    held = open_holders(
        session, program_code=program_code, enrollment_ids=[c.enrollment_id for c in unique]
    )
    if held:
        raise AlreadyFunded(sorted(held))
    assert source.id is not None
    requested = sum(c.amount_idr for c in unique)
    remaining = source.ceiling_idr - committed(session, [source.id])[source.id]
    if requested > remaining:
        raise CeilingExceeded(source=source.code, requested=requested, remaining=remaining)
    now = utcnow()
    for claim in unique:
        session.add(
            Commitment(
                approval_id=approval_id,
                program_code=program_code,
                enrollment_id=claim.enrollment_id,
                funding_source_id=source.id,
                amount_idr=claim.amount_idr,
                committed_by=actor,
                committed_at=now,
            )
        )
    try:
        session.flush()
    except IntegrityError:
        # An approval from another source committed one of these meanwhile (PostgreSQL runs
        # them concurrently; the open-commitment index arbitrates). The caller's transaction
        # is spoiled and rolls back: nothing is committed.
        raise AlreadyFunded(sorted(c.enrollment_id for c in unique)) from None
    return source


def release(
    session: Session, commitment: CommitmentRef, *, by: str, reason: str, at: dt.datetime
) -> bool:
    """Release one approval's commitment to one enrollment, if still open; whether it was."""
    changed = session.execute(
        update(Commitment)
        .where(
            col(Commitment.approval_id) == commitment.approval_id,
            col(Commitment.enrollment_id) == commitment.enrollment_id,
            col(Commitment.released_at).is_(None),
        )
        .values(released_at=at, released_by=by, release_reason=reason[:200])
    )
    return bool(changed.rowcount)  # type: ignore[attr-defined]

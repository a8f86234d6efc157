"""A program period's terms, as an enrollment knows them from its start."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgramTerms:
    """What an enrollment needs to know of its program period, fixed when it starts."""

    code: str
    period_start: dt.date
    period_end: dt.date
    renewal_lead_days: int
    successor: str | None
    verification_reminder_days: int = 7
    verification_deadline_days: int = 14
    verification_expiry_days: int | None = None
    max_age: int = 60

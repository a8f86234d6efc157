"""Calendar arithmetic of a program period in Indonesian Western Time (WIB, UTC+7).

Muara Enim is on WIB: a period that ends on 31 December ends at midnight WIB, not UTC.
Pure functions of their arguments; the workflow passes ``workflow.now()``.
"""

from __future__ import annotations

import datetime as dt

WIB = dt.timezone(dt.timedelta(hours=7), "WIB")


def start_of(day: dt.date) -> dt.datetime:
    """Midnight WIB at the start of ``day``."""
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=WIB)


def end_of(day: dt.date) -> dt.datetime:
    """Midnight WIB after ``day``: coverage that ends on ``day`` covers all of it."""
    return start_of(day + dt.timedelta(days=1))


def local_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(WIB).date()


def until(moment: dt.datetime, now: dt.datetime) -> dt.timedelta:
    """Time left from ``now`` to ``moment``, never negative."""
    return max(moment - now, dt.timedelta(0))


def renewal_opens(period_end: dt.date, lead_days: int) -> dt.datetime:
    return start_of(period_end - dt.timedelta(days=lead_days))

"""Premium (iuran) for non-wage participants (BPU) from dated rates.

Rates change by government regulation, so they are data (``data/bpu_rates.csv``: the rate in
force from ``valid_from``), not constants. The premium of a month uses the rate in force on the
first day of that month; a period's premium is the sum over its calendar months.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from importlib import resources

DEFAULT_DECLARED_INCOME_IDR = 1_000_000


@dataclass(frozen=True)
class BpuRate:
    valid_from: dt.date
    regulation: str
    jkk_percent: Decimal
    jkm_idr: int


class NoRateInForce(LookupError):
    """No rate is known for a month (a period before the first known regulation)."""


@lru_cache(maxsize=1)
def bpu_rates() -> tuple[BpuRate, ...]:
    """The rates shipped with rentan, oldest first."""
    text = resources.files("domain").joinpath("data/bpu_rates.csv").read_text(encoding="utf-8")
    rows = [
        BpuRate(
            valid_from=dt.date.fromisoformat(row["valid_from"]),
            regulation=row["regulation"],
            jkk_percent=Decimal(row["jkk_percent"]),
            jkm_idr=int(row["jkm_idr"]),
        )
        for row in csv.DictReader(text.splitlines())
    ]
    return tuple(sorted(rows, key=lambda r: r.valid_from))


def rate_on(day: dt.date, rates: tuple[BpuRate, ...]) -> BpuRate:
    in_force = [r for r in rates if r.valid_from <= day]
    if not in_force:
        raise NoRateInForce(f"no BPU rate in force on {day.isoformat()}")
    return in_force[-1]


def months_of(start: dt.date, end: dt.date) -> list[dt.date]:
    """First days of the calendar months a period touches: Oct 1 to Dec 31 gives 3."""
    months = []
    cursor = start.replace(day=1)
    while cursor <= end:
        months.append(cursor)
        cursor = (cursor + dt.timedelta(days=32)).replace(day=1)
    return months


def monthly_premium(declared_income_idr: int, rate: BpuRate) -> int:
    jkk = (Decimal(declared_income_idr) * rate.jkk_percent / 100).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    return int(jkk) + rate.jkm_idr


def period_premium(
    declared_income_idr: int,
    start: dt.date,
    end: dt.date,
    rates: tuple[BpuRate, ...] | None = None,
) -> int:
    """Premium in rupiah for one worker over a program period."""
    table = rates if rates is not None else bpu_rates()
    return sum(
        monthly_premium(declared_income_idr, rate_on(m, table)) for m in months_of(start, end)
    )

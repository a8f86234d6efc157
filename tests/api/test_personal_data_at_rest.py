"""What a copy of the database gives away without the application's keys.

A masked NIK hides the birth date and the serial; stored beside it in plain, the birth date
(and the sex) would give the whole NIK back. The projection holds the birth date sealed
(core.sealing) and the mask hides all but two serial digits, so the database alone leaves a
person's NIK among at least 10,000 candidates.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from core.sealing import SealBroken, sealer_for
from domain.nik import mask
from tests.api.conftest import Api
from tests.api.test_auth_and_roles import worker
from tests.harness import VILLAGE, nik

BORN = dt.date(1985, 5, 15)


def every_value(api: Api) -> list[str]:
    """Every value of every row of every table, as text."""
    metadata = MetaData()
    metadata.reflect(api.engine)
    values: list[str] = []
    with api.engine.connect() as sql:
        for table in metadata.sorted_tables:
            for row in sql.execute(select(table)):
                values += [str(v) for v in row if v is not None]
    return values


def candidates(masked: str, *, period_start: dt.date, max_age: int) -> int:
    """NIKs a masked one could be, knowing what the row shows: the region and the last two
    digits in the mask, the program's ages (which birth dates), the sex (which fixes the day's
    offset, so narrows nothing further)."""
    assert masked[6:14] == "*" * 8
    hidden_serial = 10 ** (16 - 12 - 2)  # the serial's first two digits
    earliest = period_start.replace(year=period_start.year - max_age - 1) + dt.timedelta(days=1)
    latest = period_start.replace(year=period_start.year - 15)
    birth_dates = (latest - earliest).days + 1
    return birth_dates * hidden_serial


async def test_a_copy_of_the_database_narrows_no_nik_below_ten_thousand(api: Api) -> None:
    number = nik(BORN.day, BORN.month, BORN.year, 4321)
    answer = await api.http.post(
        f"/v1/programs/{api.program.code}/nominations",
        json={"village_code": VILLAGE, "workers": [worker(4321)]},
        headers=api.auth("village_operator"),
    )
    assert answer.status_code == 200, answer.text
    (accepted,) = answer.json()["accepted"]
    enrollment_id = accepted["enrollment_id"]

    values = every_value(api)
    shown = " ".join(values)
    for plain in (number, number[6:12], BORN.isoformat(), "15/05/1985", "1985-05-15 00:00"):
        assert plain not in shown, plain
    masked = mask(number)
    assert masked in values and masked == f"{number[:6]}********{number[14:]}"
    left = candidates(masked, period_start=api.program.period_start, max_age=api.program.max_age)
    assert left >= 10_000, left

    # With the application's keys the birth date opens, for its own row only.
    with api.engine.connect() as sql:
        row: Any = sql.exec_driver_sql(
            "SELECT id, birth_date_sealed FROM enrollment WHERE id = ?"
            if api.engine.dialect.name == "sqlite"
            else "SELECT id, birth_date_sealed FROM enrollment WHERE id = %s",
            (enrollment_id,),
        ).one()
    sealer = sealer_for(api.settings)
    assert sealer.open(row.birth_date_sealed, row=enrollment_id) == BORN.isoformat()
    with pytest.raises(SealBroken):
        sealer.open(row.birth_date_sealed, row="enr_someone_else")


def test_candidates_are_counted_as_the_mask_leaves_them() -> None:
    # A 60-year age limit: 46 years of birth dates, 100 serials each.
    count = candidates("160301********21", period_start=dt.date(2026, 1, 1), max_age=60)
    assert 46 * 365 * 100 < count < 47 * 366 * 100

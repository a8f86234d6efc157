"""Validation of one nominated worker row, field by field, with the program's rules.

Both the API (per-row results of a nomination list) and the demo use ``validate_row``; the
workflow receives only rows that passed it, and checks a resubmission's corrections by the same
rules (``correction_errors``).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

from domain import nik as nik_rules
from domain.categories import Category, allowed_in
from domain.errors import FieldError
from domain.premium import DEFAULT_DECLARED_INCOME_IDR
from domain.regions import Village

MAX_NAME_LENGTH = 120
MIN_AGE = 15
MIN_DECLARED_INCOME_IDR = 1_000
MAX_DECLARED_INCOME_IDR = 100_000_000


@dataclass(frozen=True)
class WorkerRow:
    """A row as a village typed it: every value still a string or None."""

    nik: str | None = None
    full_name: str | None = None
    birth_date: str | None = None
    gender: str | None = None
    category: str | None = None
    phone: str | None = None
    declared_income_idr: str | None = None


@dataclass(frozen=True)
class Worker:
    """A row that passed validation, in domain types."""

    nik: str
    full_name: str
    birth_date: dt.date
    gender: str
    category: Category
    phone: str | None
    declared_income_idr: int


@dataclass(frozen=True)
class ProgramRules:
    period_start: dt.date
    period_end: dt.date
    max_age: int


_THOUSANDS = re.compile(r"^\d{1,3}([.,])\d{3}(\1\d{3})*$")


def _whole_rupiah(text: str) -> int:
    """``1000000``, ``1.000.000`` or ``1,000,000`` -> 1000000; anything else (decimals) -> -1."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if _THOUSANDS.match(text):
        return int(text.replace(".", "").replace(",", ""))
    return -1


def _has_control(text: str) -> bool:
    """NUL and other control or unassigned characters: no name has them, PostgreSQL refuses NUL."""
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def age_on(birth_date: dt.date, day: dt.date) -> int:
    years = day.year - birth_date.year
    return years - ((day.month, day.day) < (birth_date.month, birth_date.day))


def normal_name(text: str) -> str:
    return " ".join(text.split())


def name_errors(full_name: str) -> list[FieldError]:
    """A person's name, whitespace already normalized (``normal_name``)."""
    if not full_name:
        return [FieldError("full_name", "full name is required")]
    if len(full_name) > MAX_NAME_LENGTH:
        return [FieldError("full_name", f"at most {MAX_NAME_LENGTH} characters")]
    if (
        _has_control(full_name)
        or any(ch in full_name for ch in "<>=;{}\\")
        or (full_name[0] in "=+-@")
    ):
        return [FieldError("full_name", "contains characters a name cannot have")]
    return []


def age_errors(birth_date: dt.date, rules: ProgramRules) -> list[FieldError]:
    age = age_on(birth_date, rules.period_start)
    if age > rules.max_age:
        message = f"aged {age} when the period starts; the program's limit is {rules.max_age}"
        return [FieldError("birth_date", message)]
    if age < MIN_AGE:
        return [FieldError("birth_date", f"aged {age}: too young to be a worker")]
    return []


def correction_errors(
    number: str,
    *,
    full_name: str,
    birth_date: dt.date,
    gender: str,
    rules: ProgramRules,
) -> list[FieldError]:
    """A person's data as a correction leaves it, by the same rules as a nominated row."""
    errors = name_errors(full_name)
    if gender not in ("L", "P"):
        errors.append(FieldError("gender", "gender must be L or P"))
    known = gender if gender in ("L", "P") else None
    return (
        errors
        + nik_rules.check(number, birth_date=birth_date, gender=known)
        + age_errors(birth_date, rules)
    )


def validate_row(
    row: WorkerRow, *, village: Village, rules: ProgramRules
) -> tuple[Worker | None, list[FieldError]]:
    """The validated worker, or None with every field error found (not only the first)."""
    errors: list[FieldError] = []

    full_name = normal_name(row.full_name or "")
    errors += name_errors(full_name)

    birth_date: dt.date | None = None
    if not row.birth_date:
        errors.append(FieldError("birth_date", "birth date is required (YYYY-MM-DD)"))
    else:
        try:
            birth_date = dt.date.fromisoformat(row.birth_date.strip())
        except ValueError:
            errors.append(FieldError("birth_date", f"{row.birth_date!r} is not a YYYY-MM-DD date"))

    gender = (row.gender or "").strip().upper()
    if gender not in ("L", "P"):
        errors.append(FieldError("gender", "gender must be L or P"))

    category: Category | None = None
    try:
        category = Category((row.category or "").strip().lower())
    except ValueError:
        names = ", ".join(c.value for c in Category)
        errors.append(FieldError("category", f"category must be one of: {names}"))
    if category is not None and not allowed_in(category, is_kelurahan=village.is_kelurahan):
        errors.append(
            FieldError("category", f"{village.name} is a kelurahan: it has no {category.value}")
        )

    income = DEFAULT_DECLARED_INCOME_IDR
    if row.declared_income_idr not in (None, ""):
        income = _whole_rupiah(str(row.declared_income_idr))
        if not MIN_DECLARED_INCOME_IDR <= income <= MAX_DECLARED_INCOME_IDR:
            errors.append(
                FieldError(
                    "declared_income_idr",
                    f"declared income must be a whole number of rupiah between "
                    f"{MIN_DECLARED_INCOME_IDR:,} and {MAX_DECLARED_INCOME_IDR:,}",
                )
            )

    phone = (row.phone or "").strip() or None
    if phone is not None and not (phone.lstrip("+").isdigit() and 8 <= len(phone) <= 16):
        errors.append(FieldError("phone", "phone must be 8 to 16 digits, optionally with +"))

    number = nik_rules.normalize(row.nik or "")
    if not number:
        errors.append(FieldError("nik", "NIK is required"))
    else:
        errors += nik_rules.check(
            number, birth_date=birth_date, gender=gender if gender in ("L", "P") else None
        )
    if birth_date is not None:
        errors += age_errors(birth_date, rules)

    if errors or birth_date is None or category is None:
        return None, errors
    return (
        Worker(
            nik=number,
            full_name=full_name,
            birth_date=birth_date,
            gender=gender,
            category=category,
            phone=phone,
            declared_income_idr=income,
        ),
        [],
    )

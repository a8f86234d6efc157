"""NIK (Nomor Induk Kependudukan) rules: format via python-stdnum, consistency with the row.

A NIK is ``PPRRSSDDMMYYXXXX``: region of residence when issued, birth date (day + 40 for women),
serial. The region may differ from the nominating village (people move), so only its validity is
checked, not that it matches the village.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from stdnum.exceptions import InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.id import nik as stdnum_nik

from domain.errors import FieldError


def normalize(raw: str) -> str:
    """Strip spaces, dots and dashes that spreadsheets and people add."""
    return str(stdnum_nik.compact(raw))


def mask(nik: str) -> str:
    """What may be shown and logged: the region and the serial's last two digits. Never the
    birth date (stored sealed, see core.sealing), and not the whole serial: from a copy of the
    database alone a masked NIK leaves at least 100 candidates for every possible birth date."""
    if len(nik) != 16:
        return "*" * min(len(nik), 16)  # never echo an oversized input back
    return f"{nik[:6]}********{nik[14:]}"


def person_key(nik: str, *, secret: bytes) -> str:
    """A keyed hash of the NIK: stable per person, useless to anyone without the secret."""
    return hmac.new(secret, normalize(nik).encode(), hashlib.sha256).hexdigest()


def enrollment_id_for(person_key: str, program_code: str) -> str:
    """A person's enrollment in a program: stable, whichever village nominates them, and no NIK
    inside. Also the id of the enrollment's workflow (a renewal keeps its first period's)."""
    digest = hashlib.sha256(f"{person_key}:{program_code}".encode()).hexdigest()
    return f"enr_{digest[:24]}"


def check(
    nik: str, *, birth_date: dt.date | None, gender: str | None, field: str = "nik"
) -> list[FieldError]:
    """Validate a NIK and its agreement with the given birth date and gender ('L'/'P')."""
    try:
        number = stdnum_nik.validate(nik)
    except InvalidLength:
        return [FieldError(field, "NIK must have exactly 16 digits")]
    except InvalidFormat:
        return [FieldError(field, "NIK must contain only digits")]
    except InvalidComponent:
        return [FieldError(field, "NIK has an unknown region code or an impossible birth date")]
    except ValidationError:
        return [FieldError(field, "NIK is not valid")]

    errors: list[FieldError] = []
    day_field = int(number[6:8])
    encoded_gender = "P" if day_field > 40 else "L"
    if gender is not None and gender != encoded_gender:
        word = "female (day + 40)" if encoded_gender == "P" else "male"
        errors.append(FieldError("gender", f"NIK encodes {word}, but gender is {gender}"))
    if birth_date is not None:
        day, month, yy = day_field % 40, int(number[8:10]), int(number[10:12])
        if (birth_date.day, birth_date.month, birth_date.year % 100) != (day, month, yy):
            errors.append(
                FieldError(
                    "birth_date",
                    f"birth date {birth_date.isoformat()} does not match the NIK "
                    f"(which encodes {day:02d}-{month:02d}-..{yy:02d})",
                )
            )
    return errors

"""The regency's districts and villages (Kepmendagri codes), from ``data/muara_enim_regions.csv``.

Source: the MIT-licensed cahyadsn/wilayah data set (Copyright (c) 2017-2025 Cahya DSN); see
``data/README.md`` for the attribution kept with the copy.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Village:
    code: str
    name: str
    district_code: str
    district_name: str
    is_kelurahan: bool


@dataclass(frozen=True)
class District:
    code: str
    name: str


@dataclass(frozen=True)
class Regions:
    regency_code: str
    regency_name: str
    districts: dict[str, District]
    villages: dict[str, Village]


@lru_cache(maxsize=1)
def regions() -> Regions:
    text = resources.files("domain").joinpath("data/muara_enim_regions.csv").read_text("utf-8")
    districts: dict[str, District] = {}
    villages: dict[str, Village] = {}
    regency_code = regency_name = ""
    for row in csv.DictReader(text.splitlines()):
        level = row["level"]
        if level == "regency":
            regency_code, regency_name = row["code"], row["name"]
        elif level == "district":
            districts[row["code"]] = District(row["code"], row["name"])
        else:
            villages[row["code"]] = Village(
                code=row["code"],
                name=row["name"],
                district_code=row["district_code"],
                district_name=row["district_name"],
                is_kelurahan=level == "urban_village",
            )
    return Regions(regency_code, regency_name, districts, villages)


def normalize_village_code(code: str) -> str:
    """``1603012011`` (dots lost in a spreadsheet) -> ``16.03.01.2011``; other input unchanged."""
    code = code.strip()
    if len(code) == 10 and code.isdigit():
        return f"{code[:2]}.{code[2:4]}.{code[4:6]}.{code[6:]}"
    return code

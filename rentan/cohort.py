"""A synthetic cohort shaped like Muara Enim's seed (26,775 workers, Oct-Dec 2025).

About 100 village workers per desa in the regency's real villages (a kelurahan has no kepala
desa, perangkat desa or BPD), and palm-oil farmers in the seed's share (2,124 of 26,775). NIKs
are valid: the district of the village, a birth date giving an age the program accepts, the
+40 day for women, and a serial that avoids the ranges the BPJS simulator reserves for
"unknown to the registry" (99xx) and "already registered" (98xx). Deterministic for a seed, so
running the demo twice nominates the same people (and changes nothing the second time).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest

from domain.categories import Category
from domain.regions import Village, regions
from domain.worker_rows import WorkerRow

SEED_VILLAGE_WORKERS = 24_651
SEED_FARMERS = 2_124
SEED_TOTAL = SEED_VILLAGE_WORKERS + SEED_FARMERS
WORKERS_PER_DESA = 100

# A desa of about 100 workers; a kelurahan has only the categories it can have.
DESA_MIX: dict[Category, int] = {
    Category.KEPALA_DESA: 1,
    Category.PERANGKAT_DESA: 12,
    Category.BPD: 7,
    Category.NON_PERANGKAT: 10,
    Category.LINMAS: 15,
    Category.GURU_NGAJI: 20,
    Category.OPERATOR_DESA: 1,
    Category.RT_RW: 34,
}
KELURAHAN_MIX: dict[Category, int] = {
    Category.NON_PERANGKAT: 10,
    Category.LINMAS: 15,
    Category.GURU_NGAJI: 25,
    Category.RT_RW: 50,
}

GIVEN = [
    "Ahmad",
    "Budi",
    "Dedi",
    "Eko",
    "Fajar",
    "Hendra",
    "Irwan",
    "Joko",
    "Rudi",
    "Slamet",
    "Agus",
    "Bambang",
    "Darmawan",
    "Hasan",
    "Siti",
    "Nur",
    "Ayu",
    "Dewi",
    "Rina",
    "Sri",
    "Wulan",
    "Yuni",
    "Lestari",
    "Fitri",
    "Aminah",
    "Ratna",
    "Sumarni",
    "Kartini",
]
FAMILY = [
    "Saputra",
    "Wijaya",
    "Pratama",
    "Hidayat",
    "Kurniawan",
    "Setiawan",
    "Susanto",
    "Gunawan",
    "Siregar",
    "Nasution",
    "Harahap",
    "Lubis",
    "Effendi",
    "Syahputra",
    "Rahman",
    "Halim",
    "Mahmud",
    "Yusuf",
    "Ibrahim",
    "Sulaiman",
]


@dataclass(frozen=True)
class Nominee:
    village_code: str
    row: WorkerRow


@dataclass(frozen=True)
class VillageList:
    village: Village
    rows: list[WorkerRow]


def split(size: int) -> tuple[int, int]:
    """Village workers and farmers for a cohort of ``size``, in the seed's proportion."""
    farmers = round(size * SEED_FARMERS / SEED_TOTAL)
    return size - farmers, farmers


def _villages_interleaved() -> list[Village]:
    """Villages ordered district by district in turn, so a small cohort spans many districts."""
    by_district: dict[str, list[Village]] = {}
    for village in regions().villages.values():
        by_district.setdefault(village.district_code, []).append(village)
    ordered: list[Village] = []
    for group in zip_longest(*by_district.values()):
        ordered += [v for v in group if v is not None]
    return ordered


def _categories(mix: dict[Category, int], count: int) -> Iterator[Category]:
    pool = [c for c, n in mix.items() for _ in range(n)]
    for i in range(count):
        yield pool[i % len(pool)]


def generate(
    size: int, *, period_start: dt.date, max_age: int = 60, seed: int = 1603
) -> list[VillageList]:
    """The cohort as village lists, each at most ~100 rows, as villages submit them."""
    rng = random.Random(seed)
    village_workers, farmers = split(size)
    villages = _villages_interleaved()
    desa = [v for v in villages if not v.is_kelurahan]
    used: set[str] = set()
    lists: list[VillageList] = []

    remaining = village_workers
    for village in villages:
        if remaining <= 0:
            break
        count = min(WORKERS_PER_DESA, remaining)
        mix = KELURAHAN_MIX if village.is_kelurahan else DESA_MIX
        rows = [
            _person(rng, village, category, period_start, max_age, used)
            for category in _categories(mix, count)
        ]
        lists.append(VillageList(village, rows))
        remaining -= count
    if remaining > 0:  # more than the villages hold at ~100 each: wrap around
        for index in range(remaining):
            village = villages[index % len(villages)]
            mix = KELURAHAN_MIX if village.is_kelurahan else DESA_MIX
            category = next(_categories(mix, index % 100 + 1))
            lists.append(
                VillageList(village, [_person(rng, village, category, period_start, max_age, used)])
            )

    # Palm-oil farmers come through the desa of the plantation areas, in lists of up to 100.
    for start in range(0, farmers, WORKERS_PER_DESA):
        village = desa[(start // WORKERS_PER_DESA * 7) % len(desa)]
        count = min(WORKERS_PER_DESA, farmers - start)
        rows = [
            _person(rng, village, Category.PETANI_SAWIT, period_start, max_age, used)
            for _ in range(count)
        ]
        lists.append(VillageList(village, rows))
    return _merge_same_village(lists)


def _merge_same_village(lists: list[VillageList]) -> list[VillageList]:
    merged: dict[str, VillageList] = {}
    for item in lists:
        if item.village.code in merged:
            merged[item.village.code].rows.extend(item.rows)
        else:
            merged[item.village.code] = VillageList(item.village, list(item.rows))
    return list(merged.values())


def _person(
    rng: random.Random,
    village: Village,
    category: Category,
    period_start: dt.date,
    max_age: int,
    used: set[str],
) -> WorkerRow:
    female = rng.random() < (0.15 if category in (Category.KEPALA_DESA, Category.LINMAS) else 0.4)
    while True:
        age_days = rng.randint(20 * 365 + 10, max_age * 365 - 10)
        birth = period_start - dt.timedelta(days=age_days)
        serial = rng.randint(1, 9799)  # 98xx and 99xx are the simulator's special cases
        region = village.district_code.replace(".", "")
        day = birth.day + (40 if female else 0)
        number = f"{region}{day:02d}{birth.month:02d}{birth.year % 100:02d}{serial:04d}"
        if number not in used:
            used.add(number)
            break
    given = [g for g in GIVEN if (g in GIVEN[14:]) == female]
    name = f"{rng.choice(given)} {rng.choice(FAMILY)}"
    return WorkerRow(
        nik=number,
        full_name=name,
        birth_date=birth.isoformat(),
        gender="P" if female else "L",
        category=category.value,
        phone=f"08{rng.randint(10**9, 10**10 - 1)}",
    )

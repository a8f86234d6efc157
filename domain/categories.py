"""Worker categories the regency pays for, and where each exists.

A kelurahan (urban village) is part of the regency's administration, not a self-governing desa:
it has no kepala desa, no perangkat desa and no BPD, so those categories cannot come from one.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    KEPALA_DESA = "kepala_desa"
    PERANGKAT_DESA = "perangkat_desa"
    BPD = "bpd"
    NON_PERANGKAT = "non_perangkat"
    LINMAS = "linmas"
    GURU_NGAJI = "guru_ngaji"
    OPERATOR_DESA = "operator_desa"
    RT_RW = "rt_rw"
    PETANI_SAWIT = "petani_sawit"


DESA_ONLY: frozenset[Category] = frozenset(
    {Category.KEPALA_DESA, Category.PERANGKAT_DESA, Category.BPD}
)

VILLAGE_WORKERS: frozenset[Category] = frozenset(Category) - {Category.PETANI_SAWIT}


def allowed_in(category: Category, *, is_kelurahan: bool) -> bool:
    """Whether a village of that kind can nominate a worker of ``category``."""
    return not (is_kelurahan and category in DESA_ONLY)

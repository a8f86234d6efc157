"""The pure domain rules: NIK, age, categories, premium from dated rates, transitions."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest

from domain import nik as nik_rules
from domain.categories import Category, allowed_in
from domain.premium import BpuRate, NoRateInForce, months_of, period_premium
from domain.regions import normalize_village_code, regions
from domain.states import FINAL, HOLDS_PERIOD, State, can_move, refusal
from domain.worker_rows import ProgramRules, WorkerRow, validate_row

RULES = ProgramRules(dt.date(2025, 10, 1), dt.date(2025, 12, 31), max_age=60)
DESA = regions().villages["16.03.01.2011"]
KELURAHAN = regions().villages["16.03.02.1006"]


def row(**overrides: str) -> WorkerRow:
    fields = {
        "nik": "1603015505850003",
        "full_name": "Siti Aminah",
        "birth_date": "1985-05-15",
        "gender": "P",
        "category": "guru_ngaji",
    }
    fields.update(overrides)
    return WorkerRow(**fields)


def fields_of(worker_row: WorkerRow, village: object = DESA) -> set[str]:
    _, errors = validate_row(worker_row, village=village, rules=RULES)  # type: ignore[arg-type]
    return {e.field for e in errors}


def test_validate_row_accepts_a_consistent_woman() -> None:
    worker, errors = validate_row(row(), village=DESA, rules=RULES)
    assert errors == []
    assert worker is not None and worker.gender == "P" and worker.declared_income_idr == 1_000_000


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"nik": "160301550585000"}, "nik"),  # 15 digits
        ({"nik": "9903015505850003"}, "nik"),  # unknown province
        ({"nik": "1603013205850003"}, "nik"),  # day 32: no such date
        ({"gender": "L"}, "gender"),  # NIK says woman (day + 40)
        ({"birth_date": "1985-05-16"}, "birth_date"),  # differs from the NIK
        ({"birth_date": "15/05/1985"}, "birth_date"),
        ({"category": "lurah"}, "category"),
        ({"full_name": ""}, "full_name"),
        ({"full_name": '=HYPERLINK("x")'}, "full_name"),
        ({"full_name": "<script>alert(1)</script>"}, "full_name"),
        ({"declared_income_idr": "1500000.5"}, "declared_income_idr"),
        ({"phone": "12ab"}, "phone"),
    ],
)
def test_validate_row_names_the_field_at_fault(overrides: dict[str, str], field: str) -> None:
    assert field in fields_of(row(**overrides))


def test_validate_row_refuses_someone_over_the_programs_age_limit() -> None:
    old = row(nik="1603011509640001", birth_date="1964-09-15", gender="L")
    assert "birth_date" in fields_of(old)  # 61 when the period starts
    young_enough = row(nik="1603011510650001", birth_date="1965-10-15", gender="L")
    assert fields_of(young_enough) == set()  # 59 on 1 October 2025


def test_a_kelurahan_has_no_kepala_desa_perangkat_or_bpd() -> None:
    for category in (Category.KEPALA_DESA, Category.PERANGKAT_DESA, Category.BPD):
        assert not allowed_in(category, is_kelurahan=True)
        assert "category" in fields_of(row(category=category.value), KELURAHAN)
    assert allowed_in(Category.LINMAS, is_kelurahan=True)
    assert fields_of(row(category="linmas"), KELURAHAN) == set()


def test_premium_is_16800_a_month_for_the_default_income() -> None:
    assert months_of(dt.date(2025, 10, 1), dt.date(2025, 12, 31)) == [
        dt.date(2025, 10, 1),
        dt.date(2025, 11, 1),
        dt.date(2025, 12, 1),
    ]
    assert period_premium(1_000_000, dt.date(2025, 10, 1), dt.date(2025, 12, 31)) == 50_400
    # JKK is 1% of the declared income; JKM stays flat.
    assert period_premium(2_500_000, dt.date(2025, 10, 1), dt.date(2025, 10, 31)) == 25_000 + 6_800


def test_seed_cohort_costs_what_the_regency_budgeted() -> None:
    per_worker = period_premium(1_000_000, dt.date(2025, 10, 1), dt.date(2025, 12, 31))
    assert 26_775 * per_worker == 1_349_460_000


def test_premium_follows_the_rate_in_force_each_month() -> None:
    rates = (
        BpuRate(dt.date(2015, 7, 1), "PP 44/2015", Decimal("1.0"), 6_800),
        BpuRate(dt.date(2025, 12, 1), "a later regulation", Decimal("1.0"), 10_000),
    )
    total = period_premium(1_000_000, dt.date(2025, 10, 1), dt.date(2025, 12, 31), rates)
    assert total == 16_800 * 2 + 20_000
    with pytest.raises(NoRateInForce):
        period_premium(1_000_000, dt.date(2010, 1, 1), dt.date(2010, 1, 31), rates)


def test_transitions_allow_the_lifecycle_and_refuse_the_rest() -> None:
    path = [
        State.NOMINATED,
        State.VERIFIED,
        State.BUDGET_APPROVED,
        State.REGISTERING,
        State.ACTIVE,
        State.RENEWAL_PENDING,
        State.ACTIVE,
    ]
    assert all(can_move(a, b) for a, b in itertools.pairwise(path))
    assert not can_move(State.NOMINATED, State.ACTIVE)
    assert not can_move(State.ACTIVE, State.WITHDRAWN)
    assert (
        refusal(State.VERIFIED, State.VERIFIED)
        == "enrollment is verified; it cannot become verified"
    )
    assert {
        State.REJECTED,
        State.ALREADY_COVERED,
        State.LAPSED,
        State.WITHDRAWN,
        State.TERMINATED,
        State.EXPIRED,
    } == FINAL


def test_nik_is_masked_and_keyed_without_revealing_it() -> None:
    assert nik_rules.mask("1603015505850003") == "160301********03"
    key = nik_rules.person_key("1603015505850003", secret=b"s")
    assert key == nik_rules.person_key("1603-0155-0585-0003", secret=b"s")
    assert key != nik_rules.person_key("1603015505850003", secret=b"other")
    assert "1603015505850003" not in key


def test_enrollment_id_is_the_persons_in_the_program_without_the_nik() -> None:
    key = nik_rules.person_key("1603015505850003", secret=b"s")
    other = nik_rules.person_key("1603015505850004", secret=b"s")
    enrollment_id = nik_rules.enrollment_id_for(key, "ME-202610")
    # The same whichever village nominates the person and however often: one row a period.
    assert enrollment_id == nik_rules.enrollment_id_for(key, "ME-202610")
    assert enrollment_id != nik_rules.enrollment_id_for(key, "ME-202611")
    assert enrollment_id != nik_rules.enrollment_id_for(other, "ME-202610")
    assert enrollment_id.startswith("enr_") and len(enrollment_id) <= 40  # the row's id column
    assert "1603015505850003" not in enrollment_id and key not in enrollment_id


def test_only_a_rejected_withdrawn_or_expired_enrollment_gives_its_period_back() -> None:
    """A person may be nominated again in the same period only after one of these ends."""
    given_back = set(State) - HOLDS_PERIOD
    assert given_back == {State.REJECTED, State.WITHDRAWN, State.EXPIRED}
    # Other ended states keep it: nominating that person again is refused.
    kept_when_ended = FINAL & HOLDS_PERIOD
    assert kept_when_ended == {State.ALREADY_COVERED, State.LAPSED, State.TERMINATED}


def test_regions_hold_22_districts_and_256_villages() -> None:
    data = regions()
    assert (len(data.districts), len(data.villages)) == (22, 256)
    assert sum(v.is_kelurahan for v in data.villages.values()) == 10
    assert normalize_village_code("1603012011") == "16.03.01.2011"

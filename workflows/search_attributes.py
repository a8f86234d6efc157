"""Custom search attributes of enrollment workflows: no personal data, only operators' filters.

``temporal workflow list --query "RentanProgram='ME-202610' AND RentanVillage='16.03.01.2011'"``

All four are set when a run starts (a renewal's run with its new program) and never change. The
enrollment's state is not one of them: the projection answers "which enrollments are verified"
(``GET /v1/enrollments?state=``), and an upsert at every step would cost the server a
visibility write each.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

PROGRAM = SearchAttributeKey.for_keyword("RentanProgram")
VILLAGE = SearchAttributeKey.for_keyword("RentanVillage")
DISTRICT = SearchAttributeKey.for_keyword("RentanDistrict")
CATEGORY = SearchAttributeKey.for_keyword("RentanCategory")

ALL: tuple[SearchAttributeKey[str], ...] = (PROGRAM, VILLAGE, DISTRICT, CATEGORY)


def for_enrollment(
    program_code: str, village_code: str, district_code: str, category: str
) -> TypedSearchAttributes:
    """The attributes of one enrollment's run."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(PROGRAM, program_code),
            SearchAttributePair(VILLAGE, village_code),
            SearchAttributePair(DISTRICT, district_code),
            SearchAttributePair(CATEGORY, category),
        ]
    )


def dev_server_flags() -> list[str]:
    """The ``--search-attribute`` flags of ``temporal server start-dev`` for every attribute."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags

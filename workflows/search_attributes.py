"""Custom search attributes of enrollment workflows: no personal data, only operators' filters.

``temporal workflow list --query "RentanProgram='ME-202610' AND RentanVillage='16.03.01.2011'"``

All four are set once, when the workflow starts, and never change. The enrollment's state is not
one of them: upserting it at every step cost the server a visibility write each (BENCHMARKS.md);
the projection answers "which enrollments are verified" (``GET /v1/enrollments?state=``).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

PROGRAM = SearchAttributeKey.for_keyword("RentanProgram")
VILLAGE = SearchAttributeKey.for_keyword("RentanVillage")
DISTRICT = SearchAttributeKey.for_keyword("RentanDistrict")
CATEGORY = SearchAttributeKey.for_keyword("RentanCategory")
# Upserted at every step by runs started before the "state-not-indexed" patch; replaying them
# needs the key, nothing sets it any more.
LEGACY_STATE = SearchAttributeKey.for_keyword("RentanState")

ALL: tuple[SearchAttributeKey[str], ...] = (PROGRAM, VILLAGE, DISTRICT, CATEGORY)


def dev_server_flags() -> list[str]:
    """The ``--search-attribute`` flags of ``temporal server start-dev`` for every attribute."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags

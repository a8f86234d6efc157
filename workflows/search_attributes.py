"""Custom search attributes of enrollment workflows: no personal data, only operators' filters.

``temporal workflow list --query "RentanState='verified' AND RentanVillage='16.03.01.2011'"``
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

PROGRAM = SearchAttributeKey.for_keyword("RentanProgram")
VILLAGE = SearchAttributeKey.for_keyword("RentanVillage")
DISTRICT = SearchAttributeKey.for_keyword("RentanDistrict")
CATEGORY = SearchAttributeKey.for_keyword("RentanCategory")
STATE = SearchAttributeKey.for_keyword("RentanState")

ALL: tuple[SearchAttributeKey[str], ...] = (PROGRAM, VILLAGE, DISTRICT, CATEGORY, STATE)


def dev_server_flags() -> list[str]:
    """The ``--search-attribute`` flags of ``temporal server start-dev`` for every attribute."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags

"""A small workbook that names a far cell must neither freeze the API nor be read to its end.

The reproduction: a 1.5 KB XLSX with a cell at row 1,048,576 on several sheets kept the single
API process parsing for 16.5 s, ``/healthz`` unanswered all the while.
"""

from __future__ import annotations

import asyncio
import io
import time

import openpyxl
import pytest

from services.spreadsheets import (
    MAX_SHEET_ROWS,
    UploadError,
    build_template,
    parse_nomination_file,
)
from tests.api.conftest import Api
from tests.api.test_nominations_api import XLSX, upload

LAST_ROW = 1_048_576


def far_cell_workbook(sheets: int = 4) -> bytes:
    """The template with one row, and on each of ``sheets`` sheets a cell at the last row."""
    workbook = openpyxl.load_workbook(io.BytesIO(build_template()))
    first = workbook.worksheets[0]
    first.append(["1603011505850001", "Warga Jauh", "1985-05-15", "L", "perangkat_desa"])
    first.cell(row=LAST_ROW, column=1, value="x")
    for n in range(1, sheets):
        extra = workbook.create_sheet(f"Lembar {n}")
        extra.cell(row=LAST_ROW, column=1, value="x")
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_a_far_cell_is_refused_at_the_row_cap_not_walked_to() -> None:
    data = far_cell_workbook()
    assert len(data) < 32_000  # a small file (the template is most of it): the cost is the far cell
    started = time.perf_counter()
    with pytest.raises(UploadError) as caught:
        parse_nomination_file(data, filename="list.xlsx", content_type=None)
    assert f"beyond row {MAX_SHEET_ROWS:,}" in caught.value.message
    assert caught.value.field == "file"
    # Reading 10,000 rows takes well under a second; walking to row 1,048,576 took 16.5 s.
    assert time.perf_counter() - started < 5.0


async def test_the_api_answers_others_while_a_workbook_is_parsed(api: Api) -> None:
    """The parse runs off the event loop: /healthz is answered all along."""
    data = far_cell_workbook(sheets=8)
    worst = 0.0
    done = asyncio.Event()

    async def ping() -> None:
        nonlocal worst
        while not done.is_set():
            started = time.perf_counter()
            health = await api.http.get("/healthz")
            assert health.status_code == 200
            worst = max(worst, time.perf_counter() - started)
            await asyncio.sleep(0.02)

    pinging = asyncio.create_task(ping())
    try:
        answer = await upload(api, data, "list.xlsx", XLSX)
    finally:
        done.set()
        await pinging
    assert answer.status_code == 422, answer.text
    assert f"beyond row {MAX_SHEET_ROWS:,}" in answer.json()["detail"]
    assert worst < 1.0, f"/healthz waited {worst:.2f} s behind the parse"

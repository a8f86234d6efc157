"""rentan's bench driver sends again what the API answered "send it again", as a village
operator would, and keeps each row's enrollment id in its row's place. The API's answer is real:
the first list's rows are given a deadline no Temporal server can meet."""

from __future__ import annotations

from typing import Any

import pytest

import api.routes.nominations as nominations_route
import rentan.bench.resend as resend
import rentan.nominations as nominations
from domain.nomination import WorkerRow
from domain.regions import regions
from rentan import cohort
from rentan.bench.ours import ApiDriver
from rentan.keys import Role
from tests.api.conftest import Api
from tests.api.test_auth_and_roles import worker
from tests.harness import VILLAGE, row_of


def driver_for(api: Api, rows: list[WorkerRow]) -> tuple[ApiDriver, cohort.VillageList]:
    """The bench's driver on the test's API, with the test village's operator key, and a list."""
    driver = ApiDriver(
        api.http,
        {role.value: api.keys[role.value] for role in Role},
        {VILLAGE: api.keys["village_operator"]},
    )
    return driver, cohort.VillageList(regions().villages[VILLAGE], rows)


NO_TIME = nominations.NOMINATION_RPC_TIMEOUT / 60_000_000  # one microsecond


async def test_rows_answered_send_again_are_resent_and_keep_their_places(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resend, "FIRST_PAUSE_S", 0.0)
    real = nominations.nominate
    calls: list[int] = []

    async def first_list_times_out(*args: Any, **kwargs: Any) -> nominations.NominationResult:
        calls.append(len(kwargs["rows"]))
        if len(calls) > 1:
            return await real(*args, **kwargs)
        with monkeypatch.context() as patched:
            patched.setattr(nominations, "NOMINATION_RPC_TIMEOUT", NO_TIME)
            return await real(*args, **kwargs)

    monkeypatch.setattr(nominations_route, "nominate", first_list_times_out)
    rows = [WorkerRow(**{k: str(v) for k, v in worker(s).items()}) for s in (31, 32, 33)]
    driver, item = driver_for(api, rows)

    ids = await driver.nominate(api.program.code, item)

    assert calls == [3, 3]  # the whole list timed out once, then was sent again whole
    assert driver.resends.count == 3
    assert len(set(ids)) == 3
    for row, enrollment_id in zip(rows, ids, strict=True):
        assert row_of(api.engine, enrollment_id).state == "nominated"
        assert row_of(api.engine, enrollment_id).full_name == row.full_name


async def test_only_the_rows_answered_send_again_are_resent_in_their_places(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows 2 and 4 of five answered "send the list again" the first time (as ``_start_one``
    answers a row Temporal did not take): the resend carries those two only, and each id lands
    in its own row's place."""
    monkeypatch.setattr(resend, "FIRST_PAUSE_S", 0.0)
    real = nominations._start_one
    turned_away: list[str] = []

    async def rows_two_and_four_not_taken_once(
        client: Any, number: int, inp: Any, **kwargs: Any
    ) -> Any:
        name = inp.person.full_name
        if name in (rows[1].full_name, rows[3].full_name) and name not in turned_away:
            turned_away.append(name)
            return nominations.Rejected(number, "masked", [nominations._NOT_RECORDED])
        return await real(client, number, inp, **kwargs)

    monkeypatch.setattr(nominations, "_start_one", rows_two_and_four_not_taken_once)
    rows = [WorkerRow(**{k: str(v) for k, v in worker(s).items()}) for s in (41, 42, 43, 44, 45)]
    driver, item = driver_for(api, rows)

    ids = await driver.nominate(api.program.code, item)

    assert sorted(turned_away) == [rows[1].full_name, rows[3].full_name]
    assert driver.resends.count == 2
    assert [row_of(api.engine, i).full_name for i in ids] == [r.full_name for r in rows]

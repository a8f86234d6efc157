"""``Annotated`` dependency aliases that routes declare.

Dependencies are ``async def``: FastAPI runs a plain ``def`` one on its thread pool, a thread hop
each (five per step call, measured at ~2 ms of a single verification's ~30 ms in the bench). None
of them waits on anything but a short indexed read (the API key), as ``load_enrollment`` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from api.problems import Invalid
from api.state import AppState


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.rentan
    return state


async def get_session(state: Annotated[AppState, Depends(get_state)]) -> AsyncIterator[Session]:
    with Session(state.engine, expire_on_commit=False) as session:
        yield session


StateDep = Annotated[AppState, Depends(get_state)]
SessionDep = Annotated[Session, Depends(get_session)]


async def no_nul_in_url(request: Request) -> None:
    """A NUL in a path or query parameter would reach PostgreSQL (which cannot hold one): 422."""
    for where, nul in (
        ("path", "\x00" in request.scope["path"]),
        ("query", b"%00" in request.scope["query_string"]),
    ):
        if nul:
            message = "must not contain NUL (%00) characters"
            raise Invalid(f"the {where} {message}", errors=[{"field": where, "message": message}])

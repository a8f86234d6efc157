"""``Annotated`` dependency aliases that routes declare."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from api.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.rentan
    return state


def get_session(state: Annotated[AppState, Depends(get_state)]) -> Iterator[Session]:
    with Session(state.engine, expire_on_commit=False) as session:
        yield session


StateDep = Annotated[AppState, Depends(get_state)]
SessionDep = Annotated[Session, Depends(get_session)]

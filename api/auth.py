"""Authentication and roles, in one place: every route declares what it needs through these.

No key or an unknown key: 401. A known key whose role may not do this: 403. A village operator
asking for another village's enrollment gets 404 (``ensure_visible``): it must not learn that
the enrollment exists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import SessionDep, StateDep, end_read
from domain.records import Actor
from models.tables import Enrollment
from services.keys import Principal, Role, authenticate
from services.steps import find_enrollment

_bearer = HTTPBearer(auto_error=False, description="An API key from `rentan keys create`.")

READERS = frozenset(Role) - {Role.ADMIN}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def current_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>", _CHALLENGE)
    principal = authenticate(session, credentials.credentials)
    if principal is None:
        raise HTTPException(401, "unknown or revoked API key", _CHALLENGE)
    end_read(session)  # the route may wait long on Temporal: hold no snapshot meanwhile
    # For the one-line-per-request log (the middleware reads request.state).
    request.state.actor = principal.name
    request.state.role = principal.role.value
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(*roles: Role) -> Any:
    """A dependency admitting only ``roles``."""
    allowed = frozenset(roles)

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise HTTPException(403, f"role {principal.role.value} may not do this ({names} may)")
        return principal

    return Depends(check)


def ensure_visible(principal: Principal, village_code: str, what: str) -> None:
    """404 for a village operator looking at another village's data."""
    if principal.role == Role.VILLAGE_OPERATOR and principal.village_code != village_code:
        raise HTTPException(404, f"{what} not found")


def actor_of(principal: Principal) -> Actor:
    return Actor(
        name=principal.name, role=principal.role.value, village_code=principal.village_code
    )


def visible_enrollment(state: StateDep, principal: Principal, enrollment_id: str) -> Enrollment:
    """The enrollment, or 404, also when a village operator asks for another village's."""
    row = find_enrollment(state.engine, enrollment_id)
    if row is None or (
        principal.role == Role.VILLAGE_OPERATOR and row.village_code != principal.village_code
    ):
        raise HTTPException(404, f"enrollment {enrollment_id} not found")
    return row

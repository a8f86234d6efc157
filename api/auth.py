"""Authentication and roles, in one place: every route declares what it needs through these.

No key or an unknown key: 401, answered by the gate (``api.gate``) before the body is read. A
known key whose role may not do this: 403. A village operator
asking for another village's enrollment gets 404 (``ensure_visible``): it must not learn that
the enrollment exists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import StateDep
from domain.records import Actor
from models.tables import Enrollment
from services.keys import Principal, Role
from services.steps import find_enrollment

_bearer = HTTPBearer(auto_error=False, description="An API key from `rentan keys create`.")

READERS = frozenset(Role) - {Role.ADMIN}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def current_principal(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller the gate authenticated (``api.gate``) before any body was read."""
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>", _CHALLENGE)
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
        name=principal.name,
        role=principal.role.value,
        village_code=principal.village_code,
        id=f"key:{principal.key_id}",
    )


def visible_enrollment(state: StateDep, principal: Principal, enrollment_id: str) -> Enrollment:
    """The enrollment, or 404, also when a village operator asks for another village's."""
    row = find_enrollment(state.engine, enrollment_id)
    if row is None or (
        principal.role == Role.VILLAGE_OPERATOR and row.village_code != principal.village_code
    ):
        raise HTTPException(404, f"enrollment {enrollment_id} not found")
    return row

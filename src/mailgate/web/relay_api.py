"""``/v2/relay/users``: the SMTP relay's credentials.  The password is in the answer to ``POST`` only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from ..relay import DEFAULT_ACCOUNT
from .deps import AdminDep, ServicesDep

__all__ = ["RelayUserIn", "router"]

router = APIRouter(prefix="/relay", tags=["relay"])


class RelayUserIn(BaseModel):
    """A relay user to create; its password is generated."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64, description="The SMTP user name the application logs in with.")
    account: str = Field(default=DEFAULT_ACCOUNT, max_length=64, description="The account it sends through.")
    senders: list[str] = Field(
        default_factory=list, max_length=100, description="Other addresses (or *@domain) it may send as."
    )


@router.get("/users")
async def list_users(_: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Every relay user with its account, extra senders, creation and last use (never a password)."""
    return {"items": [user.to_dict() for user in await services.relay_users.list()]}


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: RelayUserIn, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Create a relay user.  The answer holds ``username`` and the generated ``password``: shown only here."""
    new = await services.relay_users.add(body.name, account=body.account, senders=body.senders)
    return {**new.user.to_dict(), "username": new.username, "password": new.password}


@router.delete("/users/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(name: str, _: AdminDep, services: ServicesDep) -> Response:
    """Delete a relay user: its application is refused from its next login on."""
    await services.relay_users.remove(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Request dependencies: the services and the authentication every protected endpoint requires."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from ..app import Services

__all__ = ["AdminDep", "ServicesDep", "bearer_token", "get_services", "require_admin"]


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain ``def`` dependency in a thread pool, a hand-off on every request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_token(authorization: str) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header value (an API key), else None."""
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


_CHALLENGE = {"WWW-Authenticate": 'Basic realm="mailgate", charset="UTF-8"'}


async def require_admin(request: Request, services: ServicesDep) -> str:
    """HTTP Basic (``admin`` + password), ``Authorization: Bearer <api key>``, or an admin session."""
    header = request.headers.get("authorization", "")
    key = bearer_token(header)
    if key is not None and await services.admins.verify_api_key(key):
        return "api-key"
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        if user and await services.admins.verify_password(user, password):
            return user
    session_user = getattr(request.state, "session_user", None)
    if isinstance(session_user, str) and session_user:
        return session_user
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="Authentication required: HTTP Basic as admin, an admin session, or Authorization: Bearer <api key>.",
        headers=_CHALLENGE,
    )


AdminDep = Annotated[str, Depends(require_admin)]

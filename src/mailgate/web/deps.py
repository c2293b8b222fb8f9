"""Request dependencies: the services and the authentication every protected endpoint requires."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from ..app import Services
from ..audit import ACTOR
from . import csrf
from .ratelimit import LoginLimiter

__all__ = ["AdminDep", "ServicesDep", "basic_credentials", "bearer_token", "get_services", "require_admin"]


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain ``def`` dependency in a thread pool, a hand-off on every request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_token(authorization: str) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header value (an API key), else None."""
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """User and password of an ``Authorization: Basic`` header value (``("", "")`` when undecodable), else None."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return user[:64], password[:1024]


_CHALLENGE = {"WWW-Authenticate": 'Basic realm="mailgate", charset="UTF-8"'}
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def require_admin(request: Request, services: ServicesDep) -> str:
    """HTTP Basic (``admin`` + password), ``Authorization: Bearer <api key>``, or an admin session.

    Failed Basic attempts count in the login form's limiter (per address and user); past its limit every
    Basic attempt from that address is answered 429 without checking the password.  A state-changing request
    that only the session authenticates must carry the page's CSRF token."""
    header = request.headers.get("authorization", "")
    key = bearer_token(header)
    if key is not None and await services.admins.verify_api_key(key):
        ACTOR.set("API key")  # whom the audit log names for what this request changes
        return "api-key"
    credentials = basic_credentials(header)
    if credentials is not None:
        user, password = credentials
        limiter: LoginLimiter = request.app.state.login_limiter
        address = request.client.host if request.client else "unknown"
        wait = limiter.retry_after(address, user)
        if wait > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail="Too many failed sign-ins from this address: wait for Retry-After seconds, then use the "
                "right password (an administrator can reset it with MAILGATE_ADMIN_PASSWORD).",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        if user and await services.admins.verify_password(user, password):
            limiter.succeeded(address, user)
            ACTOR.set(f"user {user}")
            return user
        limiter.failed(address, user)
        await services.admins.record_sign_in(user, False, address=address, via="HTTP Basic")
    session_user = getattr(request.state, "session_user", None)
    if isinstance(session_user, str) and session_user:
        # Only the cookie vouches for this request (no valid Authorization header, whatever it held): the
        # cookie alone must not authorize a cross-site request (SameSite is defence in depth).
        if request.method in _UNSAFE and not csrf.check_header(request):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"The CSRF token is missing or wrong. Send the page's token in the {csrf.HEADER} header, "
                "or use HTTP Basic or an API key.",
            )
        ACTOR.set(f"user {session_user}")
        return session_user
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="Authentication required: HTTP Basic as admin, an admin session, or Authorization: Bearer <api key>.",
        headers=_CHALLENGE,
    )


AdminDep = Annotated[str, Depends(require_admin)]

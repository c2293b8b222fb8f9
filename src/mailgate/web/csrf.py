"""CSRF protection of the admin pages: a token on every form, checked on every POST.

Signed double-submit (OWASP CSRF cheat sheet): each browser gets a random seed in an HttpOnly cookie; the
token put in forms (``csrf_token``) and in the ``X-CSRF-Token`` header of scripted requests is an HMAC of
that seed and of the session id, so it changes at login and cannot be computed by another site.  A form
posted without it, or with a wrong one, is refused with 403.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import TYPE_CHECKING

from fastapi import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from .session import WebKeys

__all__ = ["FORM_FIELD", "HEADER", "SEED_COOKIE", "CsrfError", "check", "new_seed", "token_for", "verify_form"]

SEED_COOKIE = "mailgate_csrf"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
_SEED = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


class CsrfError(Exception):
    """A state-changing request came without a valid CSRF token (answered 403)."""


def new_seed() -> str:
    return secrets.token_urlsafe(32)


def valid_seed(seed: str) -> bool:
    return bool(_SEED.match(seed))


def set_seed_cookie(response: Response, keys: WebKeys, seed: str) -> None:
    # A browser-lifetime cookie: the token must survive a long form-filling session.
    response.set_cookie(SEED_COOKIE, seed, path=keys.cookie_path, httponly=True, secure=keys.secure, samesite="lax")


def _token(keys: WebKeys, seed: str, session_id: str) -> str:
    return keys.mac("csrf", f"{seed}\x00{session_id}")


def check(keys: WebKeys, seed: str, session_id: str, token: str) -> bool:
    """Whether ``token`` is the one issued to this browser (seed) and session."""
    return bool(seed and token) and hmac.compare_digest(token, _token(keys, seed, session_id))


def token_for(request: Request) -> str:
    """The token to put in this page's forms (and ``<meta name="csrf-token">``)."""
    from .session import web_keys

    request.state.csrf_seed_used = True
    return _token(web_keys(request), str(request.state.csrf_seed), str(request.state.session_id))


async def verify_form(request: Request) -> None:
    """Raise :class:`CsrfError` unless the posted form (or the header) carries this browser's token."""
    from .session import web_keys

    form = await request.form()
    token = form.get(FORM_FIELD)
    if not isinstance(token, str) or not token:
        token = request.headers.get(HEADER, "")
    if not check(web_keys(request), str(request.state.csrf_seed), str(request.state.session_id), token):
        raise CsrfError

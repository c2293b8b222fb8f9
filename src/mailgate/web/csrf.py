"""CSRF protection of the admin pages: a token on every form, checked on every POST.

Signed double-submit (OWASP CSRF cheat sheet): each browser gets a random seed in an HttpOnly cookie; the
token put in forms (``csrf_token``) and in the ``X-CSRF-Token`` header of scripted requests is an HMAC of
that seed and of the session id, so it changes at login and cannot be computed by another site.  A form
posted without it, or with a wrong one, is refused with 403; so is an API request that changes something and
is authenticated by the session cookie alone.

A token cannot protect what a browser authenticates by itself: HTTP Basic credentials it cached when the
admin typed them into its prompt.  So every state-changing request whose ``Origin`` is not mailgate's own, or
whose ``Sec-Fetch-Site`` says another site sent it, is refused too (:func:`cross_site`; OWASP CSRF cheat
sheet, "Verifying Origin With Standard Headers" and "Fetch Metadata").  Browsers send these headers on every
such request; programs send neither and are not affected.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import Request
from starlette.requests import HTTPConnection
from starlette.responses import Response

if TYPE_CHECKING:
    from .session import WebKeys

__all__ = [
    "FORM_FIELD",
    "HEADER",
    "SEED_COOKIE",
    "CsrfError",
    "check",
    "check_header",
    "cross_site",
    "new_seed",
    "token_for",
    "verify_form",
]

SEED_COOKIE = "mailgate_csrf"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
_SEED = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
#: Sec-Fetch-Site values of requests another site made the browser send (``same-origin`` and ``none``, a
#: request the user made by hand, are ours).  ``same-site`` too: a sibling subdomain is another application.
_OTHER_SITES = frozenset({"cross-site", "same-site"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


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


def check_header(request: Request) -> bool:
    """Whether the ``X-CSRF-Token`` header carries this browser's token for its session (scripted requests
    of the pages to the API)."""
    from .session import web_keys

    return check(
        web_keys(request),
        str(request.state.csrf_seed),
        str(request.state.session_id),
        request.headers.get(HEADER, ""),
    )


def _origin(scheme: str, netloc: str) -> str:
    """``scheme://host[:port]``, lower case, without the scheme's default port (as browsers send ``Origin``)."""
    scheme = scheme.lower()
    parts = urlsplit(f"{scheme}://{netloc}")
    try:
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{scheme}://{host}:{port}"


def cross_site(conn: HTTPConnection, base_url: str) -> str:
    """Why a state-changing request must be refused as sent by another site ('' when it need not be).

    Our own origins: ``MAILGATE_BASE_URL``'s, and the one the request was addressed to (its ``Host``, with
    the scheme a trusted proxy reports), so that ``http://127.0.0.1:8080`` works as well as ``localhost``.
    """
    fetch_site = conn.headers.get("sec-fetch-site", "").strip().lower()
    if fetch_site in _OTHER_SITES:
        return f"the browser says another site sent this request (Sec-Fetch-Site: {fetch_site})"
    origin = conn.headers.get("origin")
    if origin is None:
        return ""
    base = urlsplit(base_url)
    own = {_origin(base.scheme, base.netloc), _origin(conn.url.scheme, conn.headers.get("host", ""))}
    if origin.strip().lower() in own - {""}:
        return ""
    return f"it comes from another origin (Origin: {origin[:200]}), not from mailgate's own pages"

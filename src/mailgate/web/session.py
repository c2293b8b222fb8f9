"""Admin login sessions and one-shot flash messages, in HMAC-signed cookies.

A session cookie is ``<payload>.<signature>`` where the payload (base64url JSON) holds the user, the expiry
time, a random session id and the generation of the user's password (:func:`mailgate.admins.
password_generation`), and the signature is HMAC-SHA256 under a key derived (HKDF) from mailgate's secret
key material, so every process that shares the data dir (or ``MAILGATE_SECRET_KEY``) accepts the same
sessions.  The database says when a session ended early: logging out records its id (table
``revoked_sessions``, in every process and after restarts), and changing the password changes the
generation, which ends every session issued before.

:class:`WebSessionMiddleware` reads the cookie on every request and sets ``request.state.session_user``
(what :func:`mailgate.web.deps.require_admin` accepts) and ``request.state.session_id`` (what CSRF tokens
are bound to).  It refuses, for every way of authenticating, a state-changing request that a browser says
comes from another site (:func:`.csrf.cross_site`); the CSRF token of the API is checked in ``require_admin``,
which knows whether the session was what authenticated the request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import csrf

if TYPE_CHECKING:
    from ..app import Services

__all__ = [
    "FLASH_COOKIE",
    "SESSION_COOKIE",
    "Flash",
    "SessionData",
    "WebKeys",
    "WebSessionMiddleware",
    "web_keys",
]

SESSION_COOKIE = "mailgate_session"
FLASH_COOKIE = "mailgate_flash"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SessionData:
    """A session whose signature and expiry are good: who, the random id CSRF tokens are bound to, and the
    password generation it was issued under (still to be checked against the database)."""

    user: str
    session_id: str
    expires_at: float
    generation: str = ""

    @property
    def expires(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at, UTC)


@dataclass(frozen=True)
class Flash:
    """A message shown once on the next page: ``level`` is ``ok``, ``error`` or ``info``."""

    level: str
    text: str
    hint: str = ""


class WebKeys:
    """Signs and verifies the web cookies.  Holds the derived key; never shows it."""

    def __init__(
        self,
        key_material: str,
        *,
        cookie_path: str,
        secure: bool,
        lifetime: float = 12 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"mailgate-web-v1", info=b"cookies").derive(
            key_material.encode()
        )
        self.cookie_path = cookie_path
        self.secure = secure
        self.lifetime = lifetime
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebKeys(path={self.cookie_path!r}, <key hidden>)"

    # -- signing --------------------------------------------------------------------------------------
    def mac(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 of ``value`` for one ``purpose`` (domain separation), base64url."""
        return _b64(hmac.new(self._key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest())

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self.mac(purpose, body)}"

    def unsign(self, purpose: str, token: str | None) -> dict[str, Any] | None:
        if not token or token.count(".") != 1:
            return None
        body, signature = token.split(".")
        if not hmac.compare_digest(signature, self.mac(purpose, body)):
            return None
        try:
            data = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            return None
        return data if isinstance(data, dict) else None

    # -- sessions -------------------------------------------------------------------------------------
    def new_session(self, user: str, generation: str) -> tuple[str, SessionData]:
        """A fresh session (a new id at every login: no session fixation) and its cookie value;
        ``generation`` is the user's current password generation."""
        now = self._clock()
        data = SessionData(
            user=user, session_id=secrets.token_urlsafe(18), expires_at=now + self.lifetime, generation=generation
        )
        cookie = self.sign("session", {"u": data.user, "s": data.session_id, "e": data.expires_at, "g": generation})
        return cookie, data

    def read_session(self, cookie: str | None) -> SessionData | None:
        """The session of a cookie signed by us and not expired; whether it ended early is the database's to
        say (:meth:`mailgate.admins.Admins.session_valid`)."""
        data = self.unsign("session", cookie)
        if data is None:
            return None
        user, session_id, expires_at, generation = data.get("u"), data.get("s"), data.get("e"), data.get("g")
        if not isinstance(user, str) or not isinstance(session_id, str) or not isinstance(expires_at, int | float):
            return None
        if not isinstance(generation, str) or expires_at <= self._clock():
            return None  # a cookie without a generation predates them: sign in again
        return SessionData(user=user, session_id=session_id, expires_at=float(expires_at), generation=generation)

    def set_session_cookie(self, response: Response, cookie: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(self.lifetime),
            path=self.cookie_path,
            httponly=True,
            secure=self.secure,
            samesite="lax",
        )

    def clear_session_cookie(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path=self.cookie_path, httponly=True, secure=self.secure, samesite="lax")

    # -- flash messages -------------------------------------------------------------------------------
    def set_flash(self, response: Response, flash: Flash) -> None:
        """Show ``flash`` on the next page this browser renders (signed: a link cannot forge one)."""
        value = self.sign("flash", {"l": flash.level, "t": flash.text[:600], "h": flash.hint[:600]})
        response.set_cookie(
            FLASH_COOKIE, value, max_age=300, path=self.cookie_path, httponly=True, secure=self.secure, samesite="lax"
        )

    def pop_flash(self, request: Request, response: Response) -> Flash | None:
        data = self.unsign("flash", request.cookies.get(FLASH_COOKIE))
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path=self.cookie_path, httponly=True, secure=self.secure)
        if data is None:
            return None
        return Flash(level=str(data.get("l", "info")), text=str(data.get("t", "")), hint=str(data.get("h", "")))


def web_keys(request: HTTPConnection) -> WebKeys:
    """The app's :class:`WebKeys` (installed by :func:`mailgate.web.pages.install_pages`)."""
    keys: WebKeys = request.app.state.web_keys
    return keys


class WebSessionMiddleware:
    """Pure ASGI middleware: verifies the session cookie, issues the CSRF seed cookie, refuses cross-site
    state-changing requests."""

    def __init__(self, app: ASGIApp, *, base_url: str) -> None:
        self.app = app
        self.base_url = base_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        if scope["method"] in _UNSAFE:
            problem = csrf.cross_site(conn, self.base_url)
            if problem:
                # Whatever authenticates it: a browser replays cached Basic credentials and cookies alike.
                refusal = JSONResponse(
                    {
                        "error": "forbidden",
                        "message": f"Refused: {problem}.",
                        "hint": "Change settings from mailgate's own pages, or from a program (which sends no "
                        "Origin or Sec-Fetch-Site header).",
                    },
                    status_code=403,
                )
                await refusal(scope, receive, send)
                return
        keys = web_keys(conn)
        state = scope.setdefault("state", {})
        session = keys.read_session(conn.cookies.get(SESSION_COOKIE))
        if session is not None:
            services: Services = conn.app.state.services
            if not await services.admins.session_valid(session.user, session.session_id, session.generation):
                session = None
        state["session_user"] = session.user if session else None
        state["session_id"] = session.session_id if session else ""
        seed = conn.cookies.get(csrf.SEED_COOKIE, "")
        new_seed = "" if csrf.valid_seed(seed) else csrf.new_seed()
        state["csrf_seed"] = new_seed or seed

        async def send_with_seed(message: Message) -> None:
            # Only when a page put a token in a form: a favicon or script request must not replace the
            # seed that the page being filled in was rendered with.
            if message["type"] == "http.response.start" and new_seed and state.get("csrf_seed_used"):
                headers = MutableHeaders(scope=message)
                cookie = Response()
                csrf.set_seed_cookie(cookie, keys, new_seed)
                headers.append("set-cookie", cookie.headers["set-cookie"])
            await send(message)

        await self.app(scope, receive, send_with_seed)

"""Defences of ``mailgate serve`` against clients that hold connections open (issue 20, point 5).

uvicorn (0.54) has no timeout for reading a request's headers: its ``timeout_keep_alive`` runs only between
requests and stops as soon as any byte arrives, so a client that sends half a request line keeps its
connection, and its file descriptor, for good; 20,000 of them used up the process's file descriptors and
``/healthz`` was refused.  Its ``limit_concurrency`` does not help either: it answers 503 only to requests
whose headers are complete, and it still accepts every connection.

So ``serve`` gives uvicorn an HTTP protocol class of its own (``uvicorn.Config(http=...)`` takes any
``asyncio.Protocol`` class, called as ``cls(config=, server_state=, app_state=, _loop=)``) that *wraps*
uvicorn's public httptools protocol, by composition, not by reaching into it:

- a connection beyond ``max_connections`` is answered ``503`` and closed at once, before any parsing, so a
  flood costs a file descriptor for microseconds instead of filling the table;
- a connection must have sent a request's complete headers within ``header_timeout`` of connecting, or of the
  end of its previous response, else it is closed (``408`` when part of a request had arrived, like nginx's
  ``client_header_timeout``).

"Headers complete" is when uvicorn calls the ASGI application: the wrapper passes uvicorn a per-connection
copy of the lifespan state holding itself, which every request's ``scope["state"]`` carries (the ASGI
lifespan-state extension), and :meth:`ConnectionGuard.wrap` tells the connection when a request starts and
ends.  Slow request *bodies* are not covered here (the application reads those).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import resource
from typing import Any, ClassVar, cast

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import HttpSettings

__all__ = ["DEFAULT_MAX_CONNECTIONS", "ConnectionGuard", "raise_open_file_limit"]

log = logging.getLogger(__name__)

#: Connections open at once when ``MAILGATE_HTTP_MAX_CONNECTIONS`` is not set (and the file limit allows).
DEFAULT_MAX_CONNECTIONS = 4096
#: The key of the connection in the per-connection lifespan state (taken out before the application sees it).
_KEY = "mailgate.connection"
#: At most one warning about refused connections per this many seconds: a flood must not flood the log.
_WARN_EVERY_SECONDS = 60.0


def _response(status: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


_TOO_MANY = _response("503 Service Unavailable", "Too many connections to mailgate: try again shortly.\n")
_TOO_SLOW = _response("408 Request Timeout", "The request's headers took too long to arrive.\n")


def raise_open_file_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit (each connection is a file); the
    soft limit in force afterwards.  Where the hard limit is unlimited, up to 65,536."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # e.g. macOS caps the soft limit below "unlimited"
            log.warning("Cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


def default_max_connections() -> int:
    """:data:`DEFAULT_MAX_CONNECTIONS`, or half the soft open-file limit when that is lower: the other half is
    left to the database, the SMTP connections and the files the process opens."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(1, min(DEFAULT_MAX_CONNECTIONS, soft // 2))


class ConnectionGuard:
    """The limits and the count of open connections of one HTTP server.

    ``uvicorn.Config(guard.wrap(app), http=guard.protocol, ...)``: both are needed, the protocol counts and
    times the connections, the wrapped application tells it when a request's headers were complete."""

    def __init__(self, settings: HttpSettings) -> None:
        self.header_timeout = settings.header_timeout_seconds
        self.max_connections = settings.max_connections or default_max_connections()
        #: Connections open now (refused ones are never counted).
        self.open = 0
        #: Connections refused since the last warning about them.
        self.refused = 0
        self._warned_at = -math.inf
        #: The class to give ``uvicorn.Config(http=...)``.
        self.protocol: type[GuardedConnection] = type("GuardedHTTPProtocol", (GuardedConnection,), {"guard": self})

    def __repr__(self) -> str:
        return f"ConnectionGuard(open={self.open}/{self.max_connections}, header_timeout={self.header_timeout}s)"

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app``, telling each request's connection when the request starts and when it has been answered."""

        async def marked(scope: Scope, receive: Receive, send: Send) -> None:
            state = scope.get("state")
            connection = state.pop(_KEY, None) if isinstance(state, dict) else None
            if not isinstance(connection, GuardedConnection):
                await app(scope, receive, send)
                return
            connection.request_started()
            try:
                await app(scope, receive, send)
            finally:
                connection.request_finished()

        return marked

    def refuse(self, transport: asyncio.BaseTransport) -> None:
        """Answer 503 on a connection beyond the limit and close it; warn now and then."""
        cast(asyncio.WriteTransport, transport).write(_TOO_MANY)
        transport.close()
        self.refused += 1
        now = asyncio.get_running_loop().time()
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            log.warning(
                "Refused %d HTTP connection(s) with 503: %d were open, the limit (MAILGATE_HTTP_MAX_CONNECTIONS); "
                "raise it if these are real clients",
                self.refused,
                self.open,
            )
            self._warned_at = now
            self.refused = 0


class GuardedConnection(asyncio.Protocol):
    """One HTTP connection: uvicorn's httptools protocol inside, a connection limit and a header deadline
    around it.  Subclassed per server by :class:`ConnectionGuard` (its ``guard``)."""

    guard: ClassVar[ConnectionGuard]

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # uvicorn's protocol is built only for an admitted connection: a refused one costs nothing more.
        self._make_inner = functools.partial(
            HttpToolsProtocol,
            config=config,
            server_state=server_state,
            app_state={**app_state, _KEY: self},
            _loop=_loop,
        )
        self._inner: HttpToolsProtocol | None = None
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        #: Bytes arrived since the deadline was set: part of a request (answered 408 when it expires).
        self._partial = False

    # asyncio.Protocol: delegated to uvicorn's protocol once admitted.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.guard.open >= self.guard.max_connections:
            self.guard.refuse(transport)
            return
        self.guard.open += 1
        self._transport = stream = cast(asyncio.Transport, transport)  # a stream server's transport
        self._inner = self._make_inner()
        self._inner.connection_made(stream)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return  # refused: closing
        if self._deadline is not None:
            self._partial = True
        self._inner.data_received(data)

    def eof_received(self) -> None:
        # None: the transport closes its side too, as with uvicorn's protocol alone.
        if self._inner is not None:
            self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return
        self.guard.open -= 1
        self._disarm()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # Called by ConnectionGuard.wrap.
    def request_started(self) -> None:
        """The request's headers are complete (uvicorn called the application): no deadline while it runs."""
        self._disarm()

    def request_finished(self) -> None:
        """The application answered: the next request's headers get ``header_timeout`` again."""
        if self._transport is not None and not self._transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._partial = False
        self._deadline = asyncio.get_running_loop().call_later(self.guard.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._partial:
            transport.write(_TOO_SLOW)
        transport.close()

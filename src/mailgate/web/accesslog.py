"""The access log of ``mailgate serve``: a line per HTTP request on standard output, written in blocks.

The lines are uvicorn's (``INFO:     127.0.0.1:5555 - "POST /path HTTP/1.1" 202 Accepted``), with OAuth
secrets in query strings redacted as before (:func:`.logfilter.redact_url`).  uvicorn writes them through
``logging``: a log record, a formatter that copies it, the handler's lock and a flush (a ``write`` system
call) per request.  Here each line goes straight into the stream's buffer, which is flushed FLUSH_SECONDS
after its first waiting line (like nginx's ``access_log ... buffer= flush=``) and when the process exits; an
interactive terminal still gets every line at once (its stream is line-buffered).  A process killed with
``kill -9`` loses at most its last FLUSH_SECONDS of lines.
"""

from __future__ import annotations

import asyncio
import functools
import http
import sys
import urllib.parse
from typing import TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import CLIENT_CLOSED_REQUEST
from .logfilter import redact_url

__all__ = ["FLUSH_SECONDS", "AccessLog"]

#: The longest a line waits in the buffer.
FLUSH_SECONDS = 0.5


class AccessLog:
    """ASGI middleware writing the access log (install it outermost; uvicorn's own, ``access_log=False``)."""

    def __init__(self, app: ASGIApp, *, stream: TextIO | None = None, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.app = app
        self.flush_seconds = flush_seconds
        self._stream = stream
        self._flush_timer: asyncio.TimerHandle | None = None

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout  # looked up each time: sys.stdout may be replaced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def logged(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self._write(scope, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, logged)
        except BaseException:
            if not started:
                self._write(scope, 500)  # what uvicorn answers (its error log has the traceback)
            raise

    def _write(self, scope: Scope, status: int) -> None:
        client = scope.get("client")
        path = _quoted(scope["path"])
        if scope["query_string"]:
            path = redact_url(f"{path}?{scope['query_string'].decode('ascii', 'replace')}")
        address = f"{client[0]}:{client[1]}" if client else ""
        self.stream.write(
            f'INFO:     {address} - "{scope["method"]} {path} HTTP/{scope["http_version"]}" {_status_line(status)}\n'
        )
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(self.flush_seconds, self._flush)

    def _flush(self) -> None:
        self._flush_timer = None
        self.stream.flush()


@functools.lru_cache(maxsize=256)
def _quoted(path: str) -> str:
    return urllib.parse.quote(path)


@functools.lru_cache(maxsize=64)
def _status_line(status: int) -> str:
    if status == CLIENT_CLOSED_REQUEST:  # not in the HTTP registry: nginx's code for a client that went away
        return f"{status} Client Closed Request"
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)

"""The access log middleware of ``mailgate serve``: uvicorn's lines, secrets redacted, written in blocks."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from mailgate.web.accesslog import AccessLog


class Stream(io.StringIO):
    """Counts flushes: each one is a write to the file or pipe behind standard output."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == "/boom":
        raise RuntimeError("a bug")
    status = 404 if scope["path"] == "/missing" else 202
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def client(log: AccessLog) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=log, client=("10.0.0.7", 5555)), base_url="http://x")


async def test_a_line_per_request_in_uvicorns_format_without_secrets() -> None:
    stream = Stream()
    async with client(AccessLog(app, stream=stream)) as http:
        await http.post("/ddenterpriseapi/v2/email/messages")
        await http.get("/ddenterpriseapi/v2/oauth/redirect?code=SECRET-CODE&state=SECRET-STATE&page=2")
        await http.get("/missing")
        await http.get("/a path")
    assert stream.getvalue().splitlines() == [
        'INFO:     10.0.0.7:5555 - "POST /ddenterpriseapi/v2/email/messages HTTP/1.1" 202 Accepted',
        'INFO:     10.0.0.7:5555 - "GET /ddenterpriseapi/v2/oauth/redirect?code=[redacted]&state=[redacted]&page=2 '
        'HTTP/1.1" 200 OK'.replace("200 OK", "202 Accepted"),
        'INFO:     10.0.0.7:5555 - "GET /missing HTTP/1.1" 404 Not Found',
        'INFO:     10.0.0.7:5555 - "GET /a%20path HTTP/1.1" 202 Accepted',
    ]


async def test_a_request_that_fails_before_answering_is_logged_as_500() -> None:
    stream = Stream()
    async with client(AccessLog(app, stream=stream)) as http:
        with pytest.raises(RuntimeError):
            await http.get("/boom")
    assert stream.getvalue() == 'INFO:     10.0.0.7:5555 - "GET /boom HTTP/1.1" 500 Internal Server Error\n'


async def test_lines_are_flushed_in_blocks_within_the_delay() -> None:
    stream = Stream()
    async with client(AccessLog(app, stream=stream, flush_seconds=0.5)) as http:
        for _ in range(20):
            await http.post("/ddenterpriseapi/v2/email/messages")
        assert stream.flushes == 0  # 20 lines, no write to the file yet
        await asyncio.sleep(0.8)
        assert stream.flushes == 1  # one write for all of them, within the delay
        await http.post("/ddenterpriseapi/v2/email/messages")
        await asyncio.sleep(0.8)
        assert stream.flushes == 2  # a later line does not wait for another one
    assert len(stream.getvalue().splitlines()) == 21

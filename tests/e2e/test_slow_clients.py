"""``mailgate serve`` against clients that hold connections open (issue 20, point 5), run for real on loopback."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import httpx
import pytest

from mailgate.config import HttpSettings
from mailgate.errors import ConfigurationError
from mailgate.web.connections import raise_open_file_limit

from .test_cli import _free_port, _read_until, _start, _stop

SLOW_CLIENTS = 2000
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _serve(tmp_path: Path, **variables: str) -> tuple[asyncio.subprocess.Process, str]:
    """A real ``mailgate serve`` on a free loopback port with these environment variables, and its base URL."""
    port = _free_port()
    env = {**os.environ, "MAILGATE_DATA_DIR": str(tmp_path / "data"), **variables}
    proc = await _start("serve", "--port", str(port), env=env, log=tmp_path / "serve.log")
    try:
        await _read_until(proc, "mailgate on http://")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(200):  # until uvicorn listens; bounded
                try:
                    await client.get("/healthz")
                    return proc, base
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
    except BaseException:
        await _stop(proc)
        raise
    await _stop(proc)
    raise AssertionError("mailgate serve did not answer /healthz")


async def _connect(base: str, count: int, first_bytes: bytes) -> list[Connection]:
    """``count`` connections to ``base``, each sending ``first_bytes`` (in batches: the listen backlog)."""
    host, port = base.removeprefix("http://").split(":")
    connections: list[Connection] = []
    while len(connections) < count:
        batch = await asyncio.gather(
            *(asyncio.open_connection(host, int(port)) for _ in range(min(200, count - len(connections))))
        )
        for _reader, writer in batch:
            if first_bytes:
                writer.write(first_bytes)
        connections.extend(batch)
    return connections


async def _close(connections: list[Connection]) -> None:
    for _reader, writer in connections:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _r, w in connections), return_exceptions=True)


async def test_slow_clients_are_dropped_and_healthz_answers_meanwhile(tmp_path: Path) -> None:
    # 2,000 connections here and 2,000 in the server: more than the usual soft limit of 1,024 open files.
    assert raise_open_file_limit() > SLOW_CLIENTS + 500, "the hard open-file limit is too low for this test"
    proc, base = await _serve(tmp_path, MAILGATE_HTTP_HEADER_TIMEOUT_SECONDS="3")
    slow: list[Connection] = []
    try:
        slow = await _connect(base, SLOW_CLIENTS, b"GET /healthz HT")  # half a request line, never finished
        async with httpx.AsyncClient(base_url=base) as client:
            health = await client.get("/healthz")
        assert health.status_code == 200 and health.json()["database"] == "ok"

        # A keep-alive connection that starts its second request and stops: the deadline starts again after
        # each response.
        [(reader, writer)] = await _connect(base, 1, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert first.startswith(b"HTTP/1.1 200")
        await reader.readexactly(int(first.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
        writer.write(b"GET /hea")
        rest = await asyncio.wait_for(reader.read(), 60)
        assert rest.startswith(b"HTTP/1.1 408 "), rest
        writer.close()

        # The server closes every slow connection (with 408: part of a request had arrived); bounded wait.
        answers = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _w in slow)), 60)
        assert {a.split(b"\r\n")[0] for a in answers} == {b"HTTP/1.1 408 Request Timeout"}
    finally:
        await _close(slow)
        await _stop(proc)
    # serve created its data dir for its user only.
    data = tmp_path / "data"
    assert [p.name for p in [data, *data.iterdir()] if stat.S_IMODE(p.stat().st_mode) & 0o077] == []


async def test_connections_beyond_the_limit_are_answered_503_at_once(tmp_path: Path) -> None:
    # A header timeout of 10 minutes: only the limit can end a connection during this test.
    proc, base = await _serve(tmp_path, MAILGATE_HTTP_MAX_CONNECTIONS="50", MAILGATE_HTTP_HEADER_TIMEOUT_SECONDS="600")
    held: list[Connection] = []
    try:
        held = await _connect(base, 50, b"")
        [(reader, writer)] = await _connect(base, 1, b"")
        refused = await asyncio.wait_for(reader.read(), 30)
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), refused
        writer.close()
        await _close(held)
        held = []
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(100):  # until the server has seen the 50 connections close; bounded
                health = await client.get("/healthz")
                if health.status_code == 200:
                    break
                await asyncio.sleep(0.1)
        assert health.status_code == 200
    finally:
        await _close(held)
        await _stop(proc)
    assert "Refused 1 HTTP connection(s) with 503" in (tmp_path / "serve.log").read_text()


def test_http_settings_from_the_environment() -> None:
    settings = HttpSettings.from_env(
        {"MAILGATE_HTTP_HEADER_TIMEOUT_SECONDS": "2.5", "MAILGATE_HTTP_MAX_CONNECTIONS": "300"}
    )
    assert (settings.header_timeout_seconds, settings.max_connections) == (2.5, 300)
    assert HttpSettings.from_env({}) == HttpSettings()
    with pytest.raises(ConfigurationError, match="MAILGATE_HTTP_MAX_CONNECTIONS"):
        HttpSettings.from_env({"MAILGATE_HTTP_MAX_CONNECTIONS": "many"})
    with pytest.raises(ConfigurationError, match="MAILGATE_HTTP_HEADER_TIMEOUT_SECONDS must be greater than 0"):
        HttpSettings.from_env({"MAILGATE_HTTP_HEADER_TIMEOUT_SECONDS": "0"})

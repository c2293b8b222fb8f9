"""The command line, run for real as subprocesses: first start, headless authorization."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from ..conftest import basic_auth
from ..sandbox.helpers import consent_id_of
from .harness import API, Harness


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(*args: str, env: dict[str, str], log: Path | None = None) -> asyncio.subprocess.Process:
    with open(log or os.devnull, "wb") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mailgate",
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )


async def _read_until(proc: asyncio.subprocess.Process, needle: str) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert raw, f"process ended before printing {needle!r}: {lines}"
        lines.append(raw.decode())
        if needle in lines[-1]:
            return lines


async def _healthz_once_listening(client: httpx.AsyncClient) -> httpx.Response:
    """``GET /healthz`` as soon as uvicorn listens (it prints its banner before); bounded."""
    for _ in range(100):
        try:
            return await client.get("/healthz")
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    return await client.get("/healthz")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def test_serve_generates_the_admin_password_once(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MAILGATE_ADMIN_PASSWORD"}
    env["MAILGATE_DATA_DIR"] = str(tmp_path / "data")
    log = tmp_path / "serve.log"
    proc = await _start("serve", "--port", str(port), env=env, log=log)
    try:
        lines = await _read_until(proc, "mailgate on http://")
        [line] = [x for x in lines if "password of user 'admin' is" in x]
        password = line.split(" is ")[1].strip()
        assert f"http://localhost:{port}/ddenterpriseapi/v2/oauth/redirect" in "".join(
            lines + await _read_until(proc, "redirect URI")
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = await _healthz_once_listening(client)
            assert health.json()["database"] == "ok"
            ok = await client.get(f"{API}/oauth/config", headers=basic_auth(password))
            assert ok.status_code == 200
            callback = await client.get(f"{API}/oauth/redirect?code=SECRET-AUTH-CODE&state=SECRET-STATE")
            assert callback.status_code == 400
    finally:
        await _stop(proc)
    assert (tmp_path / "data" / "mailgate.db").exists()
    assert proc.stdout is not None
    logged = log.read_text() + (await proc.stdout.read()).decode()  # uvicorn's access log goes to stdout
    assert "/oauth/redirect?code=[redacted]&state=[redacted]" in logged  # the request was logged ...
    assert "SECRET-AUTH-CODE" not in logged and "SECRET-STATE" not in logged  # ... without the secrets
    proc = await _start("serve", "--port", str(port), env=env)
    try:
        lines = await _read_until(proc, "mailgate on http://")
        assert not any("password of user" in x for x in lines)
    finally:
        await _stop(proc)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_serve_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    """uvicorn raises the signal again once it has shut down: ``serve`` must not die of it there, before its
    worker has stopped and its database is closed."""
    port = _free_port()
    env = {**os.environ, "MAILGATE_DATA_DIR": str(tmp_path / "data")}
    proc = await _start("serve", "--port", str(port), env=env)
    try:
        await _read_until(proc, "mailgate on http://")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):  # until uvicorn listens; bounded
                try:
                    assert (await client.get("/healthz")).json()["worker"] == "running"
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        assert (tmp_path / "data" / "mailgate.db-wal").exists()  # the database is open
        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await _stop(proc)
    # The last connection to close removes the write-ahead log: every connection was closed.
    assert not (tmp_path / "data" / "mailgate.db-wal").exists()


async def test_headless_authorize_with_a_pasted_url(harness: Harness) -> None:
    await harness.configure("microsoft")
    settings = harness.services.settings
    env = {
        **os.environ,
        "MAILGATE_DATA_DIR": str(settings.data_dir),
        "MAILGATE_PROVIDERS_FILE": str(settings.providers_file),
    }
    proc = await _start("oauth", "authorize", env=env)
    try:
        lines = await _read_until(proc, harness.sandbox.base_url)
        url = lines[-1].strip()
        async with httpx.AsyncClient(follow_redirects=False) as browser:
            page = await browser.get(url)
            answer = await browser.post(
                f"{harness.sandbox.base_url}/consent",
                data={"consent_id": consent_id_of(page.text), "action": "accept", "account": "ops@sandbox.test"},
            )
        landed = answer.headers["location"]
        assert proc.stdin is not None
        proc.stdin.write(landed.encode() + b"\n")
        await proc.stdin.drain()
        out = "".join(await _read_until(proc, "Authorized"))
        assert "ops@sandbox.test" in out
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await _stop(proc)
    view = await harness.view()
    assert view["refresh_token_set"] is True and view["account"] == "ops@sandbox.test"


async def test_email_test_command_reports_each_step(harness: Harness) -> None:
    await harness.configure("microsoft")
    await harness.authorize()
    settings = harness.services.settings
    env = {
        **os.environ,
        "MAILGATE_DATA_DIR": str(settings.data_dir),
        "MAILGATE_PROVIDERS_FILE": str(settings.providers_file),
    }
    proc = await _start("email", "test", "--send-to", "dave@example.com", env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    text = out.decode()
    for step in ("connect", "tls", "auth", "send"):
        assert f"PASS {step}" in text, text
    assert [m.rcpt_tos for m in harness.sandbox.messages] == [("dave@example.com",)]
    # A revoked consent fails at AUTH with what to do, and a non-zero exit status.
    harness.sandbox.revoke_all()
    harness.sandbox.expire_access_tokens()
    async with harness.services.db.session() as session:
        from mailgate.store.repository import get_account

        row = await get_account(session)
        assert row is not None
        row.access_token_enc = ""  # make the CLI process refresh (and meet the revoked grant)
    proc = await _start("email", "test", env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "FAIL auth" in out.decode() and "authorize" in out.decode().lower()


async def test_serve_believes_x_forwarded_for_only_from_trusted_proxies(tmp_path: Path) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 unless told not to: a client on loopback escaped the
    login limiter with a new made-up address per attempt, and the access log recorded the made-up ones."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MAILGATE_TRUSTED_PROXIES"}
    env.update(MAILGATE_DATA_DIR=str(tmp_path / "data"), MAILGATE_ADMIN_PASSWORD="correct horse battery")
    proc = await _start("serve", "--port", str(port), "--no-worker", env=env)
    try:
        await _read_until(proc, "mailgate on http://")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):  # until uvicorn listens; bounded
                try:
                    await client.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            codes = []
            for i in range(6):
                headers = {**basic_auth("guess"), "X-Forwarded-For": f"203.0.113.{i + 1}"}
                codes.append((await client.get(f"{API}/oauth/config", headers=headers)).status_code)
        assert codes == [401] * 5 + [429]
    finally:
        await _stop(proc)
    assert proc.stdout is not None
    logged = (await proc.stdout.read()).decode()
    assert "INFO:     127.0.0.1:" in logged and f'"GET {API}/oauth/config HTTP/1.1" 429' in logged
    assert "203.0.113." not in logged

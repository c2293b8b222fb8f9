"""/metrics and /healthz with the outbox; ``mailgate outbox ...`` and ``mailgate worker`` as subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

import httpx
import pytest

from ..smtp.servers import RunningServer
from .conftest import Env, use_server


async def test_metrics_and_healthz(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    smtp.handler.data_script["later@example.com"] = ["451 4.3.0 later"]  # type: ignore[attr-defined]
    await env.post(to=["a@example.com"])
    await env.post(to=["later@example.com"])
    await env.worker.drain()
    text = (await env.api.get("/metrics")).text
    for line in (
        'mailgate_outbox_messages{status="sent"} 1',
        'mailgate_outbox_messages{status="retrying"} 1',
        'mailgate_outbox_messages{status="queued"} 0',
        "mailgate_outbox_sent_total 1",
        "mailgate_outbox_retries_total 1",
        "mailgate_outbox_failed_total 0",
        "mailgate_outbox_held_total 0",
        "mailgate_token_refreshes_total 0",
        "mailgate_outbox_delivery_seconds_count 1",
    ):
        assert line in text.splitlines(), line
    health = (await env.api.get("/healthz")).json()
    assert health["database"] == "ok" and health["worker"] == "not started" and "token_status" in health
    task = asyncio.create_task(env.worker.run())
    await asyncio.sleep(0)  # let the task start (not a synchronisation: the state is set at once)
    assert (await env.api.get("/healthz")).json()["worker"] == "running"
    env.worker.stop()
    await task
    assert (await env.api.get("/healthz")).json()["worker"] == "stopped"


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailgate", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_outbox_cli(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    smtp.handler.data_script["bad@example.com"] = ["550 5.7.1 rejected"]  # type: ignore[attr-defined]
    good = await env.post(to=["good@example.com"], subject="cli good")
    bad = await env.post(to=["bad@example.com"], subject="cli bad")
    await env.worker.drain()
    cli_env = {**os.environ, "MAILGATE_DATA_DIR": str(env.settings.data_dir)}
    if env.settings.database_url:
        cli_env["MAILGATE_DATABASE_URL"] = env.settings.database_url
    code, out = await _cli("outbox", "list", env=cli_env)
    assert code == 0 and good in out and bad in out and "2 of 2" in out, out
    code, out = await _cli("outbox", "list", "--status", "failed", env=cli_env)
    assert code == 0 and bad in out and good not in out, out
    code, out = await _cli("outbox", "show", bad, env=cli_env)
    shown = json.loads(out)
    assert shown["status"] == "failed" and shown["last_error"]["smtp_code"] == 550
    code, out = await _cli("outbox", "retry", bad, env=cli_env)
    assert code == 0 and f"{bad} queued" in out
    code, out = await _cli("outbox", "retry", good, env=cli_env)
    assert code == 1 and "sent" in out
    code, out = await _cli("outbox", "show", "missing", env=cli_env)
    assert code == 1 and "No message" in out
    # `mailgate worker` delivers the retried message (the server accepts it now), with its own /metrics and
    # /healthz (port 0: a free one, printed), then stops on SIGTERM.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailgate", "worker", "--metrics-port", "0", env=cli_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not printed or "/metrics and /healthz of this worker:" not in printed[-1]:
                printed.append((await proc.stdout.readline()).decode())
                assert printed[-1], printed  # not the end of the output
        url = printed[-1].split(": ", 1)[1].strip()
        for _ in range(600):
            if (await env.status(bad))["status"] == "sent":
                break
            await asyncio.sleep(0.05)  # waiting for another process: polling its visible effect
        async with httpx.AsyncClient(base_url=url) as client:
            metrics = (await client.get("/metrics")).text.splitlines()
            health = (await client.get("/healthz")).json()
    finally:
        proc.terminate()
        out_bytes, _ = await proc.communicate()
    output = "".join(printed) + out_bytes.decode()
    assert (await env.status(bad))["status"] == "sent", output
    assert "mailgate_outbox_sent_total 1" in metrics and 'mailgate_outbox_messages{status="sent"} 2' in metrics
    assert health["worker"] == "running" and health["database"] == "ok", health
    assert proc.returncode == 0, output
    # A port in use: said before the worker starts.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, out = await _cli("worker", "--metrics-port", str(taken.getsockname()[1]), env=cli_env)
    assert code == 1 and "Cannot listen on 127.0.0.1:" in out and "--metrics-port" in out, out
    code, out = await _cli("outbox", "purge", "--older-than-days", "0", env=cli_env)
    assert code == 0 and "Deleted 2 message(s)." in out, out
    code, out = await _cli("outbox", "purge", "--status", "queued", env=cli_env)
    assert code != 0

"""``kill -9`` of ``mailgate serve`` while applications send through its relay: every message answered 250 is
delivered after the restart (the 250 goes out only after the outbox's commit)."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import email
import email.policy
import os
import smtplib
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import pytest

from mailgate.relay import fingerprint

from ..conftest import ADMIN_PASSWORD
from ..outbox.conftest import Env, use_server
from ..smtp.servers import RunningServer
from .conftest import SENDER

MESSAGES = 120
CLIENTS = 8
KILL_AFTER = 40  # accepted messages


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(env: Env, relay_port: int, *, worker: bool, output: Path | None = None) -> asyncio.subprocess.Process:
    child_env = {
        **os.environ,
        "MAILGATE_DATA_DIR": str(env.settings.data_dir),
        "MAILGATE_DATABASE_URL": env.settings.database_url,
        "MAILGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MAILGATE_OUTBOX_LEASE_SECONDS": "2",
        "MAILGATE_OUTBOX_POLL_SECONDS": "0.2",
    }
    argv = ["serve", "--port", str(_free_port()), "--relay-port", str(relay_port)]
    with output.open("wb") if output else open(os.devnull, "wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mailgate", *argv, *([] if worker else ["--no-worker"]), env=child_env,
            stdout=out, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip


async def _listening(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.returncode is None, "mailgate serve exited"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < deadline, "the relay did not start listening"
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_kill_9_after_250s_loses_nothing(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    password = (await env.services.relay_users.add("app1")).password
    relay_port = _free_port()
    printed = Path(env.settings.data_dir).parent / "serve.out"
    first = await _serve(env, relay_port, worker=False, output=printed)
    accepted: list[str] = []
    enough = threading.Event()
    try:
        await _listening(relay_port, first)
        context = ssl.create_default_context(cafile=str(Path(env.settings.data_dir) / "relay-cert.pem"))

        def send(i: int) -> None:
            subject = f"crash {i}"
            try:
                with smtplib.SMTP("127.0.0.1", relay_port, timeout=30) as client:
                    client.starttls(context=context)
                    client.login("app1", password)
                    client.sendmail(SENDER, [f"r{i}@example.com"], f"Subject: {subject}\r\n\r\n{i}\r\n".encode())
            except (OSError, smtplib.SMTPException):
                return  # the server died: this client got no 250
            accepted.append(subject)
            if len(accepted) >= KILL_AFTER:
                enough.set()

        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            sending = [loop.run_in_executor(pool, send, i) for i in range(MESSAGES)]
            await asyncio.to_thread(enough.wait, 120)
            first.kill()  # SIGKILL, right after the 250s: no cleanup
            await first.wait()
            await asyncio.gather(*sending)
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    at_kill = list(accepted)
    # What `mailgate serve` printed at start: where the relay listens and the certificate to trust.
    cert = (Path(env.settings.data_dir) / "relay-cert.pem").read_bytes()
    text = printed.read_text()
    assert f"SMTP relay on 127.0.0.1:{relay_port} (STARTTLS" in text, text
    assert f"SHA-256 fingerprint: {fingerprint(cert)}" in text, text
    assert KILL_AFTER <= len(at_kill) < MESSAGES, "every message was sent before the kill: raise MESSAGES"
    assert smtp.handler.messages == []  # nothing was delivered yet (no worker)

    second = await _serve(env, _free_port(), worker=True)
    try:
        deadline = time.monotonic() + 120
        while not set(at_kill) <= _subjects(smtp):
            assert time.monotonic() < deadline, "not all accepted messages were delivered"
            await asyncio.sleep(0.1)
    finally:
        second.terminate()
        await second.wait()
    delivered = collections.Counter(_subjects_list(smtp))
    print(f"\nrelay crash test: {len(at_kill)} messages answered 250 before kill -9; {len(delivered)} delivered")
    assert all(delivered[s] == 1 for s in at_kill)


def _subjects_list(smtp: RunningServer) -> list[str]:
    return [
        str(email.message_from_bytes(m.content, policy=email.policy.default)["Subject"]) for m in smtp.handler.messages
    ]


def _subjects(smtp: RunningServer) -> set[str]:
    return set(_subjects_list(smtp))

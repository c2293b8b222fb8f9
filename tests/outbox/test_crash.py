"""Crash test: ``kill -9`` a ``mailgate serve`` mid-delivery, start it again: every message is delivered,
and only those in flight at the kill (at most one per pooled connection) are delivered twice."""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import os
import socket
import sys
import time

import pytest

from mailgate.message import Limits, MessageRequest, from_request

from ..conftest import ADMIN_PASSWORD
from ..smtp.servers import RunningServer
from .conftest import Env, use_server

MESSAGES = 2000
POOL = 3  # the default number of connections per account


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(env: Env) -> asyncio.subprocess.Process:
    child_env = {
        **os.environ,
        "MAILGATE_DATA_DIR": str(env.settings.data_dir),
        "MAILGATE_DATABASE_URL": env.settings.database_url,
        "MAILGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # Short leases so that the restarted server takes over the dead one's messages quickly.
        "MAILGATE_OUTBOX_LEASE_SECONDS": "2",
        "MAILGATE_OUTBOX_POLL_SECONDS": "0.2",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailgate", "serve", "--port", str(_free_port()), env=child_env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def _until(condition: object, seconds: float) -> None:
    # Waiting for other processes: poll their visible effect, with a bound.
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_kill_9_mid_delivery(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    limits = Limits(default_sender=smtp.handler.user, max_bytes=1 << 20)
    for i in range(MESSAGES):
        message = from_request(MessageRequest(sender=None, to=[f"c{i}@example.com"], subject=f"m{i}", text="x"), limits)
        await env.services.outbox.enqueue(message)
    received = smtp.handler.messages

    first = await _serve(env)
    try:
        await _until(lambda: len(received) >= MESSAGES // 3, 120)
    finally:
        first.kill()  # SIGKILL: no cleanup, leases stay, connections drop mid-transaction
        await first.wait()
    at_kill = len(received)
    assert at_kill < MESSAGES, "delivery finished before the kill: raise MESSAGES"

    second = await _serve(env)
    try:
        sent = 0

        async def all_sent() -> None:
            nonlocal sent
            while sent < MESSAGES:
                sent = (await env.services.outbox.counts())["sent"]
                await asyncio.sleep(0.1)

        await asyncio.wait_for(all_sent(), 180)
    finally:
        second.terminate()
        await second.wait()
    ids = collections.Counter(
        str(email.message_from_bytes(m.content, policy=email.policy.default)["Message-ID"]) for m in received
    )
    duplicates = sum(n - 1 for n in ids.values())
    print(
        f"\ncrash test: {MESSAGES} messages, killed after {at_kill} deliveries; "
        f"{len(ids)} distinct delivered, {duplicates} delivered twice (bound: {POOL})"
    )
    assert len(ids) == MESSAGES
    assert duplicates <= POOL
    counts = await env.services.outbox.counts()
    assert counts["sent"] == MESSAGES and counts["sending"] == counts["queued"] == counts["retrying"] == 0

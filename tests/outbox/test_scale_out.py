"""Several workers (each with its own engine, as separate processes would have) share one outbox."""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy

from mailgate.app import build_services

from ..smtp.servers import RunningServer
from .conftest import Env, use_server


async def test_two_workers_share_the_queue_without_double_sending(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    other = await build_services(env.settings, clock=env.clock)
    try:
        ids = [await env.post(to=[f"s{i}@example.com"], subject=f"m{i}") for i in range(300)]
        first, second = env.worker, env.new_worker(other)
        done = await asyncio.gather(first.drain(), second.drain())
        await second.close()
    finally:
        await other.aclose()
    assert sum(done) == 300 and all(n > 0 for n in done), done
    received = collections.Counter(
        str(email.message_from_bytes(m.content, policy=email.policy.default)["Message-ID"])
        for m in smtp.handler.messages
    )
    assert len(received) == 300 and max(received.values()) == 1
    statuses = collections.Counter([(await env.status(i))["status"] for i in ids])
    assert statuses == {"sent": 300}

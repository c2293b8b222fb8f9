"""An idle worker picks up a queued message promptly: at once when its own process queued it, within its poll
(``MAILGATE_OUTBOX_POLL_SECONDS``) when another process did (``mailgate serve --no-worker`` feeding
``mailgate worker``), and within tens of milliseconds when it has just sent something."""

from __future__ import annotations

import asyncio

from mailgate.app import build_services

from ..smtp.servers import RunningServer
from .conftest import Env, EnvFactory, use_server

#: How long the tests wait for a delivery before failing (a bound, not a measurement).
PATIENCE = 10.0


async def _until_sent(env: Env, message_id: str) -> None:
    async def sent() -> None:
        while (await env.status(message_id))["status"] != "sent":
            await asyncio.sleep(0.02)

    await asyncio.wait_for(sent(), PATIENCE)


async def test_an_idle_worker_delivers_its_own_processs_message_at_once(
    make_env: EnvFactory, smtp: RunningServer, ca_file: str
) -> None:
    # The poll is an hour: only the wake-up from enqueue can deliver within the test's patience.
    env = await make_env(poll_seconds=3600.0)
    await use_server(env, smtp, ca_file)
    running = asyncio.create_task(env.worker.run())
    try:
        await asyncio.sleep(0.3)  # idle: its first cycle found nothing, it now waits
        assert smtp.handler.messages == []
        await _until_sent(env, await env.post(subject="from this process"))
        assert [m.rcpt_tos for m in smtp.handler.messages] == [("bob@example.com",)]
    finally:
        env.worker.stop()
        await asyncio.wait_for(running, PATIENCE)  # stop() wakes the idle worker too


async def test_an_idle_worker_polls_for_another_processs_message(
    make_env: EnvFactory, smtp: RunningServer, ca_file: str
) -> None:
    env = await make_env(poll_seconds=0.2)
    await use_server(env, smtp, ca_file)
    # The worker's own services, as in another process: the API's enqueue cannot wake it.
    worker_services = await build_services(env.settings, clock=env.clock)
    worker = env.new_worker(worker_services)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.3)
        assert smtp.handler.messages == []
        await _until_sent(env, await env.post(subject="from the API process"))
        assert [m.rcpt_tos for m in smtp.handler.messages] == [("bob@example.com",)]
    finally:
        worker.stop()
        await asyncio.wait_for(running, PATIENCE)
        await worker_services.aclose()


async def test_after_sending_a_worker_soon_takes_another_processs_next_messages(
    make_env: EnvFactory, smtp: RunningServer, ca_file: str
) -> None:
    """A worker that has just sent something looks again within tens of milliseconds, then ever less often:
    messages another process keeps queueing do not each wait for the poll, and an idle worker does not spin."""
    env = await make_env(poll_seconds=30.0)  # longer than the test's patience: only the quick look can deliver
    await use_server(env, smtp, ca_file)
    worker_services = await build_services(env.settings, clock=env.clock)
    worker = env.new_worker(worker_services)
    first = await env.post(subject="queued before the worker started")
    cycles: list[float] = []
    run_once = worker.run_once

    async def counted() -> int:
        cycles.append(asyncio.get_running_loop().time())
        return await run_once()

    worker.run_once = counted  # type: ignore[method-assign]
    running = asyncio.create_task(worker.run())
    try:
        await _until_sent(env, first)  # its first cycle sends it
        await _until_sent(env, await env.post(subject="queued by the API process just after"))
        assert [m.rcpt_tos for m in smtp.handler.messages] == [("bob@example.com",)] * 2
        cycles.clear()
        await asyncio.sleep(2.0)  # nothing more: the waits double (0.02 s, 0.04 s, ...) up to the poll
        assert len(cycles) <= 8, cycles  # a constant 0.02 s would make about 100
    finally:
        worker.stop()
        await asyncio.wait_for(running, PATIENCE)
        await worker_services.aclose()

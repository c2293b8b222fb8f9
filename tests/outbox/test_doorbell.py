"""The idle worker's doorbell: at once for this process's messages; on SQLite, within CHECK_SECONDS for other
processes' commits (``mailgate serve --no-worker`` feeding ``mailgate worker``), without polling the outbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from mailgate.app import build_services
from mailgate.outbox.doorbell import CHECK_SECONDS, Doorbell
from mailgate.store import Database

from ..smtp.servers import RunningServer
from .conftest import EnvFactory, use_server


async def _timed(waiting: asyncio.Future[None] | asyncio.Task[None]) -> float:
    started = time.monotonic()
    await waiting
    return time.monotonic() - started


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    """Two engines on one SQLite file, as two processes would have."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bell.db'}"
    first, second = Database(url), Database(url)
    async with first.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (v INTEGER)"))
    yield first, second
    await first.close()
    await second.close()


async def test_another_connections_commit_rings_within_the_check_interval(two: tuple[Database, Database]) -> None:
    writer, watched = two
    bell = Doorbell(watched)
    try:
        # Nothing happens: the whole time.
        assert await _timed(bell.wait(0.3)) >= 0.3

        waiting = asyncio.ensure_future(_timed(bell.wait(30)))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        async with writer.engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (1)"))
        committed = time.monotonic()
        await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - committed < CHECK_SECONDS + 0.5

        # A ring (this process) returns at once, however long the wait.
        bell.clear()
        waiting = asyncio.ensure_future(_timed(bell.wait(30)))
        await asyncio.sleep(0.05)
        bell.ring()
        assert await asyncio.wait_for(waiting, 5) < 1
        # A ring before the wait (after clear) counts too: the message was queued while the worker looked.
        assert await _timed(bell.wait(30)) < 1
    finally:
        await bell.close()


async def test_without_a_database_file_only_rings_and_the_time_count(tmp_path: Path) -> None:
    db = Database("sqlite+aiosqlite://")  # in memory: no file to watch
    bell = Doorbell(db)
    try:
        assert await _timed(bell.wait(0.2)) >= 0.2
        bell.ring()
        assert await _timed(bell.wait(30)) < 1
    finally:
        await bell.close()
        await db.close()


async def test_an_idle_worker_delivers_another_processs_message_at_once(
    make_env: EnvFactory, smtp: RunningServer, ca_file: str
) -> None:
    # The worker's poll is 30 s: only the doorbell can wake it in time.
    env = await make_env(poll_seconds=30.0)
    await use_server(env, smtp, ca_file)
    worker_services = await build_services(env.settings, clock=env.clock)
    worker = env.new_worker(worker_services)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.3)  # idle: its first cycle found nothing
        assert smtp.handler.messages == []
        message_id = await env.post(subject="from the API process")
        posted = time.monotonic()
        while (await env.status(message_id))["status"] != "sent":
            assert time.monotonic() - posted < 5, "the worker did not notice the message"
            await asyncio.sleep(0.01)
        assert [m.rcpt_tos for m in smtp.handler.messages] == [("bob@example.com",)]
    finally:
        worker.stop()
        await running
        await worker_services.aclose()

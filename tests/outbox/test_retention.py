"""Sent messages are deleted, rows and bodies, MAILGATE_OUTBOX_KEEP_SENT_DAYS after they were sent (by the
worker, every hour); queued, failed and held messages are kept.  Time moves by the test's hand."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailgate.config import OutboxSettings
from mailgate.errors import ConfigurationError
from mailgate.outbox import service, worker
from mailgate.store.models import OutboxBodyRow

from ..smtp.servers import RunningServer
from .conftest import Env, EnvFactory, use_server
from .servers import ScriptedMailbox


async def bodies(env: Env) -> int:
    async with env.services.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(OutboxBodyRow))).scalar_one())


async def test_sent_messages_go_after_the_days_kept(
    make_env: EnvFactory, smtp: RunningServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "EXPIRE_CHUNK", 3)  # several transactions
    env: Env = await make_env(keep_sent_days=10)
    await use_server(env, smtp, ca_file)
    assert isinstance(smtp.handler, ScriptedMailbox)
    smtp.handler.data_script["refused@example.com"] = ["550 5.1.1 no such user"]
    old = [await env.post(to=[f"old{i}@example.com"]) for i in range(7)]
    failed = await env.post(to=["refused@example.com"])
    assert await env.worker.drain() == 8
    env.clock.advance(timedelta(days=6).total_seconds())
    recent = await env.post(to=["recent@example.com"])
    assert await env.worker.drain() == 1
    env.clock.advance(timedelta(days=5).total_seconds())  # the old ones were sent 11 days ago, recent 5
    queued = await env.post(to=["queued@example.com"])  # not sent yet
    assert await env.worker.housekeeping() == 7
    assert [await env.status(i) for i in (recent, failed, queued)]  # still there
    assert (await env.status(failed))["status"] == "failed"
    for message_id in old:
        r = await env.api.get(f"/ddenterpriseapi/v2/email/messages/{message_id}")
        assert r.status_code == 404
    assert await env.stored_count() == 3 and await bodies(env) == 3
    assert await env.worker.housekeeping() == 0  # nothing more is due
    env.clock.advance(timedelta(days=6).total_seconds())
    assert await env.worker.housekeeping() == 1  # recent, now 11 days ago
    assert await env.stored_count() == 2 and await bodies(env) == 2


async def test_a_running_worker_does_it_at_start_then_every_hour(
    make_env: EnvFactory, smtp: RunningServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env: Env = await make_env(keep_sent_days=1, poll_seconds=0.05)
    await use_server(env, smtp, ca_file)
    await env.post(to=["a@example.com"])
    assert await env.worker.drain() == 1
    env.clock.advance(timedelta(days=2).total_seconds())
    calls: list[int] = []
    real = worker.Worker.housekeeping

    async def counted(self: worker.Worker) -> int:
        calls.append(await real(self))
        return calls[-1]

    monkeypatch.setattr(worker.Worker, "housekeeping", counted)
    running = asyncio.create_task(env.worker.run())
    try:
        for _ in range(200):
            if calls:
                break
            await asyncio.sleep(0.01)
        assert calls == [1] and await env.stored_count() == 0
        await asyncio.sleep(0.3)  # several poll cycles: not again within the hour
        assert calls == [1]
    finally:
        env.worker.stop()
        await running


def test_the_days_kept_are_configured_from_the_environment() -> None:
    assert OutboxSettings().keep_sent_days == 30
    assert OutboxSettings.from_env({"MAILGATE_OUTBOX_KEEP_SENT_DAYS": "7.5"}).keep_sent_days == 7.5
    with pytest.raises(ConfigurationError, match="MAILGATE_OUTBOX_KEEP_SENT_DAYS"):
        OutboxSettings.from_env({"MAILGATE_OUTBOX_KEEP_SENT_DAYS": "0"})

"""``mailgate serve`` and ``mailgate worker`` run the notifier: a real process, its real clock, a webhook
receiver on loopback; one notification when the condition starts, one when it ends, and a clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import update

from mailgate.alerts import AlertSettingsUpdate
from mailgate.app import build_services
from mailgate.config import Settings
from mailgate.configure import OAuthConfigUpdate
from mailgate.store.models import OAuthAccountRow

from ..conftest import ADMIN_PASSWORD
from ..e2e.test_cli import _free_port, _read_until, _start, _stop
from .receiver import WebhookReceiver


async def _set_status(settings: Settings, status: str) -> None:
    services = await build_services(settings)
    try:
        async with services.db.session() as session:
            row = await session.get(OAuthAccountRow, "default")
        if row is None:  # the OAuth page saved (problems are watched for configured accounts) ...
            await services.config.save_oauth(
                OAuthConfigUpdate(provider="microsoft", tenant="contoso.com", client_id="client-1", client_secret="s1")
            )
        async with services.db.session() as session:
            if row is None:  # ... and a consent as the OAuth flow stores it, here made by hand
                session.add(
                    OAuthAccountRow(
                        id="default",
                        provider="microsoft",
                        client_id="client-1",
                        account="alice@contoso.com",
                        refresh_token_enc=services.box.encrypt("refresh-1"),
                        status=status,
                        refresh_count=0,
                    )
                )
            else:
                await session.execute(update(OAuthAccountRow).values(status=status))
    finally:
        await services.aclose()


async def _wait_for(receiver: WebhookReceiver, count: int) -> None:
    for _ in range(600):  # bounded: 60 s at most
        if len(receiver.received) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} notification(s) expected, got {receiver.received}")


@pytest.mark.parametrize("command", ["worker", "serve"])
async def test_the_process_notifies_start_and_end_once(tmp_path: Path, receiver: WebhookReceiver, command: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", admin_password=ADMIN_PASSWORD)
    services = await build_services(settings)
    try:
        await services.alerts.save(AlertSettingsUpdate(webhook_url=receiver.url))
    finally:
        await services.aclose()
    await _set_status(settings, "reauthorization_required")
    await receiver.up()
    env = {**os.environ, "MAILGATE_DATA_DIR": str(settings.data_dir), "MAILGATE_ALERTS_POLL_SECONDS": "0.2"}
    args = ["serve", "--port", str(_free_port())] if command == "serve" else ["worker"]
    proc = await _start(*args, env=env, log=tmp_path / "process.log")
    try:
        await _read_until(proc, "mailgate on http://" if command == "serve" else "mailgate worker")
        await _wait_for(receiver, 1)
        await _set_status(settings, "valid")
        await _wait_for(receiver, 2)
        await asyncio.sleep(1)  # five more checks: nothing more to say
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await _stop(proc)
    assert [(p["event"], p["account"], p["code"]) for p in receiver.received] == [
        ("started", "default", "reauthorization_required"),
        ("resolved", "default", "reauthorization_required"),
    ]

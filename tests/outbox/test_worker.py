"""Delivery against a real aiosmtpd server: reuse, retries, permanent failures, per-recipient results,
leases, limits and holds.  Time moves only by the test's hand (``env.clock``); nothing sleeps."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from typing import Any

import pytest

from mailgate.outbox import queue, worker
from mailgate.store.models import OutboxMessageRow

from ..smtp.servers import RunningServer
from .conftest import Env, EnvFactory, use_server
from .servers import ScriptedMailbox


def _mailbox(server: RunningServer) -> ScriptedMailbox:
    assert isinstance(server.handler, ScriptedMailbox)
    return server.handler


def _message_id(content: bytes) -> str:
    return str(email.message_from_bytes(content, policy=email.policy.default)["Message-ID"])


async def test_delivers_over_reused_connections(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    ids = [await env.post(to=[f"r{i}@example.com"], subject=f"n{i}") for i in range(30)]
    assert await env.worker.drain() == 30
    box = _mailbox(smtp)
    assert len(box.messages) == 30
    # At most one AUTH per pooled connection (3 by default), not one per message.
    assert 1 <= len(box.sasl_commands) <= 3
    for message_id in ids:
        shown = await env.status(message_id)
        assert shown["status"] == "sent" and shown["attempts"] == 1 and shown["sent_at"]
        [rcpt] = shown["recipients"]
        assert shown["recipient_results"][rcpt]["status"] == "sent"
        [received] = box.received_by(rcpt)
        assert _message_id(received.content) == shown["message_id"]
    # The next batch reuses the open connections.
    await env.post(to=["late@example.com"])
    assert await env.worker.drain() == 1
    assert len(box.sasl_commands) <= 3


async def test_a_batch_of_large_messages_is_claimed_a_few_at_a_time(
    env: Env, smtp: RunningServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bodies a worker holds waiting for a connection stay under BATCH_BYTES (plus one message): large
    messages are claimed a few at a time, not 25 per connection."""
    await use_server(env, smtp, ca_file)
    ids = [await env.post(to=[f"r{i}@example.com"], text=f"{i}{'x' * 900}\n" * 40) for i in range(12)]
    size = len(await env.stored_raw(ids[0]))
    monkeypatch.setattr(worker, "BATCH_BYTES", 3 * size)
    claims: list[tuple[int, int]] = []  # (max_bytes, bytes claimed)
    real = queue.claim

    def claim(*args: Any, max_bytes: int, **kwargs: Any) -> list[queue.Claimed]:
        claimed = real(*args, max_bytes=max_bytes, **kwargs)
        claims.append((max_bytes, sum(row.size for row in claimed)))
        return claimed

    monkeypatch.setattr(queue, "claim", claim)
    assert await env.worker.drain() == 12
    assert len(_mailbox(smtp).messages) == 12
    assert all(0 < limit <= 3 * size and got <= max(limit, size + 100) for limit, got in claims if got), claims
    assert len([got for _, got in claims if got]) >= 4, claims  # 12 messages, at most 3 at a time


async def test_claimed_bodies_are_read_after_releasing_the_write_lock(
    env: Env, smtp: RunningServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim holds the outbox's write lock, which the API's inserts wait for: the bodies (up to BATCH_BYTES of
    them) are read after it is released, and each message goes out with its own body."""
    await use_server(env, smtp, ca_file)
    ids = [await env.post(to=[f"b{i}@example.com"], text=f"body number {i}") for i in range(3)]
    locked: list[bool] = []
    real = queue.with_bodies

    def with_bodies(*args: Any) -> list[queue.Claimed]:
        locked.append(env.services.outbox.writes.lock.locked())
        return real(*args)

    monkeypatch.setattr(queue, "with_bodies", with_bodies)
    assert await env.worker.drain() == 3
    assert locked == [False]  # one claim of the three
    for i, message_id in enumerate(ids):
        [received] = _mailbox(smtp).received_by(f"b{i}@example.com")
        assert _message_id(received.content) == (await env.status(message_id))["message_id"]
        assert f"body number {i}" in received.content.decode()


async def test_transient_replies_retry_with_backoff_and_keep_the_message_id(
    env: Env, smtp: RunningServer, ca_file: str
) -> None:
    await use_server(env, smtp, ca_file)
    box = _mailbox(smtp)
    box.data_script["busy@example.com"] = ["451 4.3.0 Try again later", "421 4.7.0 Closing, try later"]
    box.rcpt_script["full@example.com"] = ["452 4.2.2 Mailbox full for now"]
    busy = await env.post(to=["busy@example.com"])
    full = await env.post(to=["full@example.com"])
    assert await env.worker.drain() == 2
    for message_id, code in ((busy, 451), (full, 452)):
        shown = await env.status(message_id)
        assert shown["status"] == "retrying" and shown["attempts"] == 1
        assert shown["last_error"]["smtp_code"] == code and shown["last_error"]["code"] == "smtp_transient"
    # Not due yet: nothing happens.  Backoff: base 30 s, half fixed, half jitter (0 here).
    assert await env.worker.drain() == 0
    env.clock.advance(15)
    assert await env.worker.drain() == 2
    assert (await env.status(busy))["last_error"]["smtp_code"] == 421
    assert (await env.status(full))["status"] == "sent"
    env.clock.advance(29)  # second retry waits 30 s (60 s halved, no jitter)
    assert await env.worker.drain() == 0
    env.clock.advance(2)
    assert await env.worker.drain() == 1
    shown = await env.status(busy)
    assert shown["status"] == "sent" and shown["attempts"] == 3
    [received] = box.received_by("busy@example.com")
    assert _message_id(received.content) == shown["message_id"]


async def test_permanent_replies_fail_at_once(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    box = _mailbox(smtp)
    box.data_script["spam@example.com"] = ["550 5.7.1 Message rejected as spam"]
    box.data_script["huge@example.com"] = ["552 5.3.4 Message size exceeds fixed limit"]
    spam = await env.post(to=["spam@example.com"])
    huge = await env.post(to=["huge@example.com"])
    ok = await env.post(to=["fine@example.com"])
    assert await env.worker.drain() == 3
    for message_id, code, text in ((spam, 550, "spam"), (huge, 552, "size")):
        shown = await env.status(message_id)
        assert shown["status"] == "failed" and shown["attempts"] == 1
        assert shown["last_error"]["smtp_code"] == code and text in shown["last_error"]["smtp_reply"]
    assert (await env.status(ok))["status"] == "sent"
    env.clock.advance(86400)
    assert await env.worker.drain() == 0  # failed messages stay failed...
    r = await env.api.post(f"/ddenterpriseapi/v2/email/messages/{spam}/retry")  # ...until an admin retries
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert await env.worker.drain() == 1
    assert (await env.status(spam))["status"] == "sent"
    r = await env.api.post(f"/ddenterpriseapi/v2/email/messages/{spam}/retry")
    assert r.status_code == 409


async def test_per_recipient_results(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    box = _mailbox(smtp)
    box.refuse = {"gone@example.com": "550 5.1.1 No such user"}
    box.rcpt_script["later@example.com"] = ["452 4.2.2 Over quota, try later"]
    message_id = await env.post(to=["ok@example.com", "gone@example.com", "later@example.com"])
    await env.worker.drain()
    shown = await env.status(message_id)
    results = shown["recipient_results"]
    assert results["ok@example.com"]["status"] == "sent"
    assert results["gone@example.com"] == {"status": "failed", "code": 550, "reply": "5.1.1 No such user"}
    assert results["later@example.com"]["status"] == "pending" and results["later@example.com"]["code"] == 452
    assert shown["status"] == "retrying"
    env.clock.advance(60)
    await env.worker.drain()
    shown = await env.status(message_id)
    assert shown["status"] == "sent" and shown["recipient_results"]["later@example.com"]["status"] == "sent"
    assert shown["recipient_results"]["gone@example.com"]["status"] == "failed"
    # The retry went to the pending recipient only: nobody got the message twice.
    assert [m.rcpt_tos for m in box.messages] == [("ok@example.com",), ("later@example.com",)]


async def test_recipients_pending_at_the_deadline_fail_with_the_message(
    env: Env, smtp: RunningServer, ca_file: str
) -> None:
    """A message failed when its retry deadline passes leaves no recipient pending: each one not delivered is
    failed with the last reply (it was left "pending" under a failed message)."""
    await use_server(env, smtp, ca_file)
    box = _mailbox(smtp)
    box.rcpt_script["later@example.com"] = ["452 4.2.2 Over quota, try later"] * 2
    message_id = await env.post(to=["ok@example.com", "later@example.com"])
    await env.worker.drain()
    assert (await env.status(message_id))["recipient_results"]["later@example.com"]["status"] == "pending"
    env.clock.advance(env.services.outbox.settings.retry_deadline_seconds + 1)
    await env.worker.drain()
    shown = await env.status(message_id)
    assert shown["status"] == "failed" and shown["last_error"]["message"].startswith("Retry deadline passed")
    assert shown["recipient_results"]["ok@example.com"]["status"] == "sent"
    assert shown["recipient_results"]["later@example.com"] == {
        "status": "failed",
        "code": 452,
        "reply": "4.2.2 Over quota, try later",
    }
    assert [m.rcpt_tos for m in box.messages] == [("ok@example.com",)]


async def test_dropped_connections_are_retried(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    box = _mailbox(smtp)
    box.data_script["flaky@example.com"] = ["DROP"]
    box.rcpt_script["flaky2@example.com"] = ["DROP"]
    a = await env.post(to=["flaky@example.com"])
    b = await env.post(to=["flaky2@example.com"])
    c = await env.post(to=["steady@example.com"])
    await env.worker.drain()
    assert (await env.status(a))["status"] == "retrying" and (await env.status(b))["status"] == "retrying"
    assert (await env.status(c))["status"] == "sent"
    env.clock.advance(60)
    await env.worker.drain()
    assert {(await env.status(m))["status"] for m in (a, b, c)} == {"sent"}
    assert len(box.messages) == 3


async def test_retry_deadline_then_failed(make_env: EnvFactory, smtp: RunningServer, ca_file: str) -> None:
    env: Env = await make_env(retry_deadline_seconds=100, retry_base_seconds=30)
    await use_server(env, smtp, ca_file)
    _mailbox(smtp).data_script["never@example.com"] = ["451 4.3.0 Try again later"] * 100
    message_id = await env.post(to=["never@example.com"])
    for _ in range(10):
        await env.worker.drain()
        env.clock.advance(60)
    shown = await env.status(message_id)
    assert shown["status"] == "failed" and "deadline" in shown["last_error"]["message"]
    assert shown["last_error"]["smtp_code"] == 451 and 2 <= shown["attempts"] <= 5


async def test_server_down_retries_without_hammering(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    from mailgate.configure import EmailServerUpdate

    # A port nothing listens on.
    server = await env.services.config.email_server()
    await env.services.config.save_email_server(
        EmailServerUpdate(host="127.0.0.1", port=1, security="starttls", authentication="password",
                          username=server.username, sender=server.sender, password=None, ca_file=ca_file)
    )  # fmt: skip
    ids = [await env.post(to=[f"x{i}@example.com"]) for i in range(10)]
    assert await env.worker.drain() == 10
    shown = [await env.status(i) for i in ids]
    assert {s["status"] for s in shown} == {"retrying"}
    # One failed connection attempt per pooled connection, not one per message.
    assert sum(s["attempts"] for s in shown) <= 3
    assert {s["next_attempt_at"] for s in shown} != {None}
    await use_server(env, smtp, ca_file)
    env.clock.advance(60)
    assert await env.worker.drain() == 10
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}


async def test_refused_credentials_hold_until_the_configuration_changes(
    env: Env, smtp: RunningServer, ca_file: str
) -> None:
    await use_server(env, smtp, ca_file, password="wrong")
    ids = [await env.post(to=[f"h{i}@example.com"]) for i in range(5)]
    await env.worker.drain()
    shown = [await env.status(i) for i in ids]
    assert {s["status"] for s in shown} == {"held"}
    assert shown[0]["last_error"]["code"] == "smtp_auth_failed"
    auths = len(_mailbox(smtp).sasl_commands)
    env.clock.advance(3600)
    assert await env.worker.drain() == 0  # nothing changed: no new login attempts
    assert len(_mailbox(smtp).sasl_commands) == auths
    await use_server(env, smtp, ca_file)  # the administrator fixes the password
    await env.worker.drain()
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}


async def test_expired_lease_returns_message_to_the_queue(env: Env, smtp: RunningServer, ca_file: str) -> None:
    await use_server(env, smtp, ca_file)
    message_id = await env.post(to=["crash@example.com"])
    # A worker claims the message and dies before recording anything.
    now, lease = env.clock(), timedelta(seconds=120)
    [row] = await env.services.outbox.writes.transaction(
        lambda c: queue.claim(
            c, account_id="default", owner="dead-worker", now=now, lease=lease, limit=10, max_bytes=1 << 20
        )
    )
    assert row.id == message_id and (await env.status(message_id))["status"] == "sending"
    assert await env.worker.drain() == 0  # leased to the other worker
    env.clock.advance(121)
    assert await env.worker.drain() == 1
    assert (await env.status(message_id))["status"] == "sent"
    async with env.services.db.session() as session:
        stored = await session.get(OutboxMessageRow, message_id)
        assert stored is not None and stored.lease_owner is None


async def test_messages_per_minute_limit(make_env: EnvFactory, smtp: RunningServer, ca_file: str) -> None:
    env: Env = await make_env(providers_toml="[providers.google]\nmessages_per_minute = 2\nmessages_per_day = 5\n")
    r = await env.api.put(
        "/ddenterpriseapi/v2/oauth/config", json={"provider": "google", "client_id": "c", "client_secret": "s"}
    )
    assert r.status_code == 200, r.text
    await use_server(env, smtp, ca_file)
    ids = [await env.post(to=[f"l{i}@example.com"]) for i in range(7)]
    assert await env.worker.drain() == 2
    env.clock.advance(30)
    assert await env.worker.drain() == 0
    env.clock.advance(31)
    assert await env.worker.drain() == 2
    env.clock.advance(61)
    assert await env.worker.drain() == 1  # the daily limit (5) is reached
    env.clock.advance(3600)
    assert await env.worker.drain() == 0
    env.clock.advance(86400)
    assert await env.worker.drain() == 2
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}


async def test_stop_gives_the_claimed_messages_not_tried_back_at_once(
    env: Env, smtp: RunningServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SIGTERM (Worker.stop) each connection finishes the message it is sending and records it; the claimed
    messages it has not tried go back to the queue at once, not when their lease runs out."""
    await use_server(env, smtp, ca_file)
    ids = [await env.post(to=[f"s{i}@example.com"]) for i in range(30)]
    recorder = env.worker._recorder
    record = recorder.sent

    async def stop_after_the_first(*args: Any) -> None:
        await record(*args)
        env.worker.stop()

    monkeypatch.setattr(recorder, "sent", stop_after_the_first)
    assert await env.worker.run_once() == 30  # claimed in the cycle
    statuses = [await env.status(message_id) for message_id in ids]
    sent = [s for s in statuses if s["status"] == "sent"]
    delivered = _mailbox(smtp).messages
    # At most the message each of the 3 connections was sending, and the one it had started after it.
    assert 1 <= len(sent) == len(delivered) <= 6, len(sent)
    assert {(s["status"], s["attempts"]) for s in statuses if s["status"] != "sent"} == {("retrying", 0)}
    assert await env.worker.drain() == 0  # stopped: claims nothing more
    other = env.new_worker()
    try:
        assert await other.drain() == 30 - len(sent)  # due now: no lease to wait for
    finally:
        await other.close()
    assert len(_mailbox(smtp).messages) == 30

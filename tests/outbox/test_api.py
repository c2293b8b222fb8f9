"""The messages API: queueing (JSON and raw), idempotency, refusals that store nothing, reading, retry."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event

from mailgate.message import Limits, MessageRequest, from_request
from mailgate.outbox.service import new_message_id
from mailgate.store.models import AccountRow

from .conftest import API, Env, EnvFactory

MESSAGES = f"{API}/email/messages"


async def test_post_json_queues_and_get_shows_it(env: Env) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 test").decode()
    r = await env.api.post(
        MESSAGES,
        json={
            "from": "Alice <alice@example.com>",
            "to": ["bob@example.com"],
            "cc": ["carol@example.com"],
            "bcc": ["dave@example.com"],
            "reply_to": "replies@example.com",
            "subject": "Quarterly report",
            "text": "See attached.\n",
            "html": "<p>See attached.</p>",
            "attachments": [{"filename": "r.pdf", "content_type": "application/pdf", "content_base64": pdf}],
            "headers": {"X-Campaign": "q3"},
        },
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"id", "status"} and body["status"] == "queued"
    assert r.headers["location"].endswith(body["id"])
    shown = (await env.api.get(f"{MESSAGES}/{body['id']}")).json()
    assert shown["status"] == "queued" and shown["attempts"] == 0
    assert shown["from"] == "alice@example.com"
    assert shown["recipients"] == ["bob@example.com", "carol@example.com", "dave@example.com"]
    assert shown["message_id"].startswith("<") and shown["subject"] == "Quarterly report"
    assert shown["created_at"] and shown["sent_at"] is None and shown["last_error"] is None
    message = email.message_from_bytes(await env.stored_raw(body["id"]), policy=email.policy.default)
    assert message["Message-ID"] == shown["message_id"]
    assert message["Bcc"] is None  # Bcc recipients are in the envelope only
    assert message["X-Campaign"] == "q3" and message["Reply-To"] == "replies@example.com"
    assert [p.get_filename() for p in message.iter_attachments()] == ["r.pdf"]


async def test_the_view_of_a_queued_message_is_the_stored_ones(env: Env) -> None:
    """enqueue builds its view from the values it inserted (cheaper): the same as read back afterwards."""
    limits = Limits(default_sender="alice@example.com", max_bytes=1 << 20)
    request = MessageRequest(sender=None, to=["bob@example.com", "carol@example.com"], subject="s", text="x")
    view, created = await env.services.outbox.enqueue(from_request(request, limits), idempotency_key="k1")
    assert created and view.status == "queued"
    assert view == await env.services.outbox.get(view.id)


async def test_from_defaults_to_configured_sender(env: Env) -> None:
    from mailgate.configure import EmailServerUpdate

    await env.services.config.save_email_server(
        EmailServerUpdate(
            host="smtp.example.com", port=587, security="starttls", authentication="password",
            username="app@example.com", sender="noreply@example.com", password="pw",
        )
    )  # fmt: skip
    message_id = await env.post()
    assert (await env.status(message_id))["from"] == "noreply@example.com"


async def test_raw_rfc822_message(env: Env) -> None:
    raw = (
        b"From: alice@example.com\r\nTo: bob@example.com\r\nBcc: secret@example.com\r\n"
        b"Subject: raw one\r\n\r\nHello\r\n"
    )
    r = await env.api.post(MESSAGES, content=raw, headers={"Content-Type": "message/rfc822"})
    assert r.status_code == 202, r.text
    shown = await env.status(r.json()["id"])
    assert shown["recipients"] == ["bob@example.com", "secret@example.com"]
    assert shown["subject"] == "raw one" and shown["message_id"]
    stored = await env.stored_raw(shown["id"])
    assert b"secret@example.com" not in stored and b"Message-ID:" in stored and b"Date:" in stored


async def test_idempotency_key_returns_the_same_message(env: Env) -> None:
    body = {"from": "a@example.com", "to": ["b@example.com"], "subject": "once", "text": "x"}
    first = await env.api.post(MESSAGES, json=body, headers={"Idempotency-Key": "order-42"})
    again = await env.api.post(MESSAGES, json=body, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = await env.api.post(MESSAGES, json={**body, "subject": "twice"}, headers={"Idempotency-Key": "order-42"})
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["fields"]
    assert await env.stored_count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": ["not an address"]}, "to[0]"),
        ({"to": ["bob@example.com"], "cc": ["x@"]}, "cc[0]"),
        ({"to": ["bob@example.com"], "bcc": ["@nowhere"]}, "bcc[0]"),
        ({"to": ["bob@example.com"], "from": "alice"}, "from"),
        ({"to": ["bob@example.com"], "reply_to": "a@example.com\r\nBcc: evil@example.com"}, "reply_to"),
        ({"to": ["bob@example.com\r\nBcc: evil@example.com"]}, "to[0]"),
        ({"to": ["bob@example.com"], "subject": "hi\r\nBcc: evil@example.com"}, "subject"),
        ({"to": ["bob@example.com"], "headers": {"X-Tag": "a\nBcc: evil@example.com"}}, "headers.X-Tag"),
        ({"to": ["bob@example.com"], "headers": {"Bad Name": "x"}}, "headers.Bad Name"),
        ({"to": []}, "to"),
        ({}, "to"),
        ({"to": ["bob@example.com"], "attachments": [{"filename": "a", "content_base64": "%%%"}]},
         "attachments[0].content_base64"),
        ({"to": ["bob@example.com"], "attachments": [{"filename": "a\r\nX: y", "content_base64": "QQ=="}]},
         "attachments[0].filename"),
        ({"to": ["bob@example.com"], "priority": "high"}, "priority"),
        ({"to": "bob@example.com"}, "to"),
    ],
)  # fmt: skip
async def test_bad_json_names_the_field_and_stores_nothing(env: Env, body: dict[str, object], field: str) -> None:
    r = await env.api.post(MESSAGES, json={"from": "alice@example.com", "text": "x", **body})
    assert r.status_code == 422, r.text
    assert field in r.json()["fields"], r.json()
    assert await env.stored_count() == 0


async def test_body_not_json(env: Env) -> None:
    r = await env.api.post(MESSAGES, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["fields"] == {"body": "is not valid JSON"}
    r = await env.api.post(MESSAGES, content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert await env.stored_count() == 0


async def test_raw_message_without_recipients_or_with_bad_address(env: Env) -> None:
    for raw, field in (
        (b"From: alice@example.com\r\nSubject: x\r\n\r\nbody\r\n", "headers.To"),
        (b"From: alice@example.com\r\nTo: bob@\r\nSubject: x\r\n\r\nbody\r\n", "headers.To"),
        (b"just some text", "body"),
    ):
        r = await env.api.post(MESSAGES, content=raw, headers={"Content-Type": "message/rfc822"})
        assert r.status_code == 422 and field in r.json()["fields"], r.text
    assert await env.stored_count() == 0


async def test_size_limit(make_env: EnvFactory) -> None:
    env: Env = await make_env(max_message_bytes=10_000)
    big = base64.b64encode(b"x" * 20_000).decode()
    r = await env.api.post(
        MESSAGES,
        json={
            "from": "a@example.com",
            "to": ["b@example.com"],
            "attachments": [{"filename": "f", "content_base64": big}],
        },
    )
    assert r.status_code == 413 and "message" in r.json()["fields"], r.text
    raw = b"From: a@example.com\r\nTo: b@example.com\r\n\r\n" + b"y" * 20_000
    r = await env.api.post(MESSAGES, content=raw, headers={"Content-Type": "message/rfc822"})
    assert r.status_code == 413
    assert await env.stored_count() == 0


async def test_recipient_limit_of_the_provider(make_env: EnvFactory) -> None:
    env: Env = await make_env(providers_toml="[providers.google]\nmax_recipients = 3\n")
    await env.api.put(f"{API}/oauth/config", json={"provider": "google", "client_id": "c", "client_secret": "s"})
    r = await env.api.post(
        MESSAGES,
        json={
            "from": "a@example.com",
            "to": ["b@example.com", "c@example.com"],
            "bcc": ["d@example.com", "e@example.com"],
        },
    )
    assert r.status_code == 422 and "recipients" in r.json()["fields"], r.text
    assert "at most 3" in r.json()["fields"]["recipients"]
    assert await env.stored_count() == 0


async def test_bundled_google_limit_is_100(env: Env) -> None:
    await env.api.put(f"{API}/oauth/config", json={"provider": "google", "client_id": "c", "client_secret": "s"})
    to = [f"r{i}@example.com" for i in range(101)]
    r = await env.api.post(MESSAGES, json={"from": "a@example.com", "to": to})
    assert r.status_code == 422 and "100" in r.json()["fields"]["recipients"]


async def test_concurrent_requests_share_one_read_of_the_limits(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limits (sender, size, the provider's recipients) are re-read once a second; the requests that find
    them due wait for one read, not one each; after a failed read, the next request reads again."""
    outbox = env.services.outbox
    real = outbox._read_limits
    reads: list[bool] = []  # one per read, whether it failed
    failing = [False]

    async def counted(account: str) -> Limits:
        reads.append(failing[0])
        await asyncio.sleep(0.05)  # a slow database: the other requests arrive meanwhile
        if failing[0]:
            raise OSError("database gone")
        return await real(account)

    monkeypatch.setattr(outbox, "_read_limits", counted)
    outbox._limits.clear()
    statuses = await asyncio.gather(
        *(env.api.post(MESSAGES, json={"from": "a@example.com", "to": [f"r{i}@example.com"]}) for i in range(8))
    )
    assert [r.status_code for r in statuses] == [202] * 8 and reads == [False]
    assert (await env.api.post(MESSAGES, json={"from": "a@example.com", "to": ["s@example.com"]})).status_code == 202
    assert reads == [False]  # within the second: no read at all

    outbox._limits.clear()
    failing[0] = True
    results = await asyncio.gather(*(outbox.limits() for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [OSError] * 3 and reads == [False, True, True, True]
    failing[0] = False
    assert (await outbox.limits()).default_sender is not None and reads == [False, True, True, True, False]


async def test_concurrent_requests_share_one_read_of_the_sender_policies(env: Env) -> None:
    """Which account may send as whom is re-read once a second (3 tables): the requests that find it due share
    one read; each reading its own, 16 concurrent clients made 16 reads a second."""
    reads: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT") and f"FROM {AccountRow.__tablename__}" in statement:
            reads.append(statement)

    env.services.accounts._cache.read_at = -1.0  # due
    event.listen(Engine, "before_cursor_execute", before)
    try:
        statuses = await asyncio.gather(
            *(env.api.post(MESSAGES, json={"from": "a@example.com", "to": [f"r{i}@example.com"]}) for i in range(8))
        )
    finally:
        event.remove(Engine, "before_cursor_execute", before)
    assert [r.status_code for r in statuses] == [202] * 8 and len(reads) == 1, reads


async def test_authentication_required(env: Env) -> None:
    transport = env.api._transport
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as anonymous:
        assert (await anonymous.post(MESSAGES, json={"to": ["b@example.com"]})).status_code == 401
        assert (await anonymous.get(MESSAGES)).status_code == 401
    assert await env.stored_count() == 0


async def test_list_filter_paginate_and_retry(env: Env) -> None:
    ids = []
    for i in range(5):
        env.clock.advance(1)
        ids.append(await env.post(**{"from": "a@example.com", "subject": f"m{i}"}))
    page = (await env.api.get(MESSAGES, params={"limit": 2})).json()
    assert page["total"] == 5 and [m["id"] for m in page["items"]] == ids[::-1][:2] and page["next_offset"] == 2
    last = (await env.api.get(MESSAGES, params={"limit": 2, "offset": 4})).json()
    assert len(last["items"]) == 1 and last["next_offset"] is None
    assert (await env.api.get(MESSAGES, params={"status": "failed"})).json()["total"] == 0
    assert (await env.api.get(MESSAGES, params={"status": "bogus"})).status_code == 422
    assert (await env.api.get(f"{MESSAGES}/nope")).status_code == 404
    # A queued message may be "retried" (it stays due now); unknown ids are 404.
    assert (await env.api.post(f"{MESSAGES}/{ids[0]}/retry")).json()["status"] == "queued"
    assert (await env.api.post(f"{MESSAGES}/nope/retry")).status_code == 404


def test_message_ids_are_uuid7_in_the_order_they_were_made() -> None:
    """Time-ordered ids: new rows go at the end of the primary-key indexes (see new_message_id)."""
    burst = [new_message_id() for _ in range(10_000)]
    assert len(set(burst)) == len(burst)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in burst)
    # The first 48 bits (12 hex digits, "01a2215b-803b"): the time in milliseconds, never going back.
    stamps = [made[:13] for made in burst]
    assert stamps == sorted(stamps)
    before = time.time_ns() // 1_000_000
    made = new_message_id()
    after = time.time_ns() // 1_000_000
    assert before <= uuid.UUID(made).int >> 80 <= after

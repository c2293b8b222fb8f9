"""Large requests to the messages API share a memory budget (MAILGATE_OUTBOX_UPLOAD_MEMORY_BYTES).

A large request waits, its body unread, until its bytes fit in the outbox's intake; small requests (1 MiB
and under) never wait for it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message

from mailgate.budget import ByteBudget
from mailgate.config import OutboxSettings
from mailgate.errors import ConfigurationError
from mailgate.web import create_app, messages_api

from .conftest import API, Env, EnvFactory
from .test_client_gone import post_scope

MESSAGES = f"{API}/email/messages"
BUDGET = 3 * 1024 * 1024


def large_body(size: int = 1536 * 1024) -> bytes:
    attachment = {"filename": "report.pdf", "content_base64": base64.b64encode(os.urandom(size)).decode()}
    fields = {"from": "alice@example.com", "to": ["bob@example.com"], "subject": "report", "attachments": [attachment]}
    return json.dumps(fields).encode()


class Upload:
    """A request body handed to the app chunk by chunk, as the app asks for them (counted)."""

    def __init__(self, body: bytes, chunk: int = 256 * 1024) -> None:
        self.chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


async def until(condition: object, what: str) -> None:
    for _ in range(500):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_large_request_waits_unread_while_small_ones_go_on(make_env: EnvFactory, declared: bool) -> None:
    env: Env = await make_env(upload_memory_bytes=BUDGET)
    intake = env.services.outbox.intake
    body = large_body()
    upload = Upload(body)
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(len(body))
    holding = intake.reserve(intake.total)  # every byte taken, as by other large requests
    await holding.__aenter__()
    try:
        large = asyncio.create_task(env.api.post(MESSAGES, content=upload, headers=headers))
        await until(lambda: intake.waiting == 1, "the large request to wait")
        # Unread while it waits: nothing of a declared body; of one of unknown length, its first MiB.
        assert upload.pulled == (0 if declared else 5), upload.pulled
        small = await env.api.post(
            MESSAGES, json={"from": "alice@example.com", "to": ["bob@example.com"], "text": "hi"}
        )
        assert small.status_code == 202, small.text
        assert await env.stored_count() == 1 and not large.done()
        metrics = (await env.api.get("/metrics")).text
        assert f"mailgate_outbox_upload_bytes {intake.total}\n" in metrics
        assert "mailgate_outbox_uploads_waiting 1\n" in metrics
    finally:
        await holding.__aexit__(None, None, None)
    response = await large
    assert response.status_code == 202, response.text
    assert upload.pulled == len(upload.chunks)
    assert await env.stored_count() == 2
    metrics = (await env.api.get("/metrics")).text
    assert "mailgate_outbox_upload_bytes 0\n" in metrics and "mailgate_outbox_uploads_waiting 0\n" in metrics
    assert intake.reserved == 0 and intake.waiting == 0


async def test_concurrent_large_requests_stay_within_the_budget(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    env: Env = await make_env(upload_memory_bytes=BUDGET)
    intake = env.services.outbox.intake
    seen = {"reserved": 0, "waiting": 0}
    real_grant = ByteBudget._grant

    def grant(self: ByteBudget) -> None:
        seen["waiting"] = max(seen["waiting"], self.waiting)
        real_grant(self)
        seen["reserved"] = max(seen["reserved"], self.reserved)

    monkeypatch.setattr(ByteBudget, "_grant", grant)
    bodies = [large_body() for _ in range(6)]  # about 2 MiB of JSON each: one at a time fits
    responses = await asyncio.gather(
        *(env.api.post(MESSAGES, content=b, headers={"Content-Type": "application/json"}) for b in bodies)
    )
    assert [r.status_code for r in responses] == [202] * 6, [r.text for r in responses]
    assert await env.stored_count() == 6
    assert seen["waiting"] >= 1, "no request ever waited"
    assert 0 < seen["reserved"] <= BUDGET
    assert intake.reserved == 0 and intake.waiting == 0


async def test_a_refused_large_request_gives_its_bytes_back(make_env: EnvFactory) -> None:
    env: Env = await make_env(upload_memory_bytes=BUDGET)
    body = large_body().replace(b'"to": ["bob@example.com"]', b'"to": ["not an address"]')
    r = await env.api.post(MESSAGES, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "to" in json.dumps(r.json()["fields"]), r.text
    assert env.services.outbox.intake.reserved == 0
    assert await env.stored_count() == 0


def test_the_budget_is_configured_from_the_environment() -> None:
    assert OutboxSettings().upload_memory_bytes == 100 * 1024 * 1024
    settings = OutboxSettings.from_env({"MAILGATE_OUTBOX_UPLOAD_MEMORY_BYTES": "52428800"})
    assert settings.upload_memory_bytes == 50 * 1024 * 1024
    with pytest.raises(ConfigurationError, match="MAILGATE_OUTBOX_UPLOAD_MEMORY_BYTES"):
        OutboxSettings.from_env({"MAILGATE_OUTBOX_UPLOAD_MEMORY_BYTES": "lots"})


async def test_a_large_body_that_stalls_is_refused_and_gives_its_bytes_back(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(messages_api, "BODY_IDLE_SECONDS", 0.2)
    env: Env = await make_env(upload_memory_bytes=BUDGET)
    token = (await env.services.admins.create_api_key("stalls")).key
    first = b'{"to": ["bob@example.com"], "text": "'
    incoming: list[Message] = [{"type": "http.request", "body": first, "more_body": True}]

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # the sender has gone silent (no FIN: nothing says it left)
        raise AssertionError("unreachable")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await create_app(env.services)(post_scope(f"Bearer {token}", 2 * 1024 * 1024), receive, send)
    assert sent[0]["status"] == 408
    answer = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert answer["error"] == "request_timeout" and "nothing was stored" in answer["message"]
    assert env.services.outbox.intake.reserved == 0
    assert await env.stored_count() == 0


async def test_a_large_body_that_keeps_coming_slowly_is_not_cut_off(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(messages_api, "BODY_IDLE_SECONDS", 0.3)
    env: Env = await make_env(upload_memory_bytes=BUDGET)
    body = large_body()

    class Slow(Upload):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in self.chunks:
                await asyncio.sleep(0.1)  # the whole body takes longer than the idle limit
                yield chunk

    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    r = await env.api.post(MESSAGES, content=Slow(body), headers=headers)
    assert r.status_code == 202, r.text

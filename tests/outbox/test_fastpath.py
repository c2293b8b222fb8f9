"""The fast path of ``POST .../email/messages`` with an API key (:mod:`mailgate.web.fastpath`).

It must answer exactly as the app's route does (status, body, headers, what is stored), be taken for a
Bearer POST only, and leave every other request, including a key that does not verify, to the app.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from mailgate import admins as admins_module
from mailgate.app import Services, build_services
from mailgate.web import create_app
from mailgate.web.app import MailgateApp
from mailgate.web.deps import ServicesDep, require_admin
from mailgate.web.fastpath import QueueFastPath

from ..conftest import basic_auth
from ..web.conftest import form_token, login
from .conftest import API, Env, EnvFactory

MESSAGES = f"{API}/email/messages"
BASE_URL = "http://localhost:8080"
#: A small size limit, so that the over-limit cases stay small too.
LIMIT = 10_000
#: Over ``LIMIT * 4 // 3 + 1 MiB``: refused from Content-Length, before the body is read.
HUGE = LIMIT * 4 // 3 + 1024 * 1024 + 1


# -- helpers ---------------------------------------------------------------------------------------------


def _has_fast_path(app: FastAPI) -> bool:
    return isinstance(app, MailgateApp) and isinstance(app.fast_path, QueueFastPath)


def _reference_app(services: Services) -> FastAPI:
    """The app as it would be without the fast path: every request goes through routing and dependencies."""
    app = create_app(services)
    assert _has_fast_path(app), "create_app no longer installs QueueFastPath"
    app.fast_path = None
    assert not _has_fast_path(app)
    return app


def _key_of(env: Env) -> str:
    scheme, _, key = env.api.headers["authorization"].partition(" ")
    assert scheme == "Bearer" and key
    return key


@asynccontextmanager
async def _client(app: FastAPI, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers) as client:
        yield client


def _normalized(raw: bytes) -> bytes:
    """The stored message without what is generated anew each time: Message-ID, Date, MIME boundaries."""
    for boundary in set(re.findall(rb'boundary="?([^";\r\n]+)"?', raw)):
        raw = raw.replace(boundary, b"<boundary>")
    return b"\r\n".join(line for line in raw.split(b"\r\n") if not line.lower().startswith((b"message-id:", b"date:")))


def _answer(response: httpx.Response) -> dict[str, Any]:
    """What must not depend on the way a request went: status, body and headers, generated ids blanked."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    location = response.headers.get("location")
    if isinstance(body, dict) and "id" in body:
        # A generated id: it must be the one in Location; then it is left out of the comparison.
        assert location == f"{MESSAGES}/{body['id']}", (location, body)
        body = {**body, "id": "<id>"}
        location = f"{MESSAGES}/<id>"
    # Every header, not only the relevant ones: a Set-Cookie or any other extra would be a difference too.
    headers = sorted((k, v) for k, v in response.headers.multi_items() if k not in ("location", "content-length"))
    return {
        "status": response.status_code,
        "body": body,
        "location": location,
        "headers": headers,
    }


# -- 1. the same answers as the app without the fast path ------------------------------------------------

RAW = b"From: alice@example.com\r\nTo: bob@example.com\r\nBcc: secret@example.com\r\nSubject: raw one\r\n\r\nHello\r\n"
JSON_MESSAGE: dict[str, Any] = {
    "from": "Alice <alice@example.com>",
    "to": ["bob@example.com"],
    "cc": ["carol@example.com"],
    "bcc": ["dave@example.com"],
    "reply_to": "replies@example.com",
    "subject": "Quarterly report",
    "text": "See attached.\n",
    "html": "<p>See attached.</p>",
    "attachments": [
        {"filename": "r.pdf", "content_type": "application/pdf", "content_base64": base64.b64encode(b"%PDF").decode()}
    ],
    "headers": {"X-Campaign": "q3"},
}
SIMPLE: dict[str, Any] = {"from": "alice@example.com", "to": ["bob@example.com"], "subject": "hello", "text": "x"}


@dataclass(frozen=True)
class Case:
    """One request, sent once to each app, with the API key unless ``headers`` say otherwise.  In header
    values, ``{key}`` is replaced by the API key and ``{app}`` by a tag of the app, of the same length (5),
    so that the two requests (on one database) do not share an Idempotency-Key."""

    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Sent after ``headers``, for a header given twice.
    repeated: tuple[tuple[str, str], ...] = ()
    query: str = ""
    status: int = 202
    #: A field that the 422 answer must name.
    field: str = ""


CASES: dict[str, Case] = {
    "json message": Case(json=JSON_MESSAGE),
    "json with charset": Case(
        content=json.dumps(SIMPLE).encode(), headers={"Content-Type": "application/json; charset=utf-8"}
    ),
    "json without content-type": Case(content=json.dumps(SIMPLE).encode()),
    "raw rfc822 message": Case(content=RAW, headers={"Content-Type": "message/rfc822"}),
    "query string": Case(json=SIMPLE, query="?notify=1"),
    "two spaces after Bearer": Case(json=SIMPLE, headers={"Authorization": "Bearer  {key}"}),
    "lowercase bearer": Case(json=SIMPLE, headers={"Authorization": "bearer {key}"}),
    "two idempotency keys, short first": Case(
        json=SIMPLE, headers={"Idempotency-Key": "{app}-1"}, repeated=(("Idempotency-Key", "k" * 256),)
    ),
    "two idempotency keys, long first": Case(
        json=SIMPLE,
        headers={"Idempotency-Key": "k" * 256},
        repeated=(("Idempotency-Key", "{app}-2"),),
        status=422,
        field="idempotency-key",
    ),
    "a wrong key, then the right one": Case(
        json=SIMPLE,
        headers={"Authorization": "Bearer mg_wrong"},
        repeated=(("Authorization", "Bearer {key}"),),
        status=401,
    ),
    "tab after Bearer": Case(json=SIMPLE, headers={"Authorization": "Bearer\t{key}"}, status=401),
    "idempotency key of 255": Case(json=SIMPLE, headers={"Idempotency-Key": "{app}".ljust(255, "k")}),
    "invalid json": Case(content=b"{not json", headers={"Content-Type": "application/json"}, status=422, field="body"),
    "empty body": Case(content=b"", headers={"Content-Type": "application/json"}, status=422),
    "unknown field": Case(json={**SIMPLE, "priority": "high"}, status=422, field="priority"),
    "wrong type": Case(json={**SIMPLE, "to": "bob@example.com"}, status=422, field="to"),
    "invalid address": Case(json={**SIMPLE, "to": ["not an address"]}, status=422, field="to[0]"),
    "invalid sender": Case(json={**SIMPLE, "from": "alice"}, status=422, field="from"),
    "CR/LF in the subject": Case(
        json={**SIMPLE, "subject": "hi\r\nBcc: evil@example.com"}, status=422, field="subject"
    ),
    "LF in a header value": Case(
        json={**SIMPLE, "headers": {"X-Tag": "a\nBcc: evil@example.com"}}, status=422, field="headers.X-Tag"
    ),
    "CR/LF in a recipient": Case(
        json={**SIMPLE, "to": ["bob@example.com\r\nBcc: evil@example.com"]}, status=422, field="to[0]"
    ),
    "no recipient": Case(json={**SIMPLE, "to": []}, status=422, field="to"),
    "raw without recipient": Case(
        content=b"From: alice@example.com\r\nSubject: x\r\n\r\nbody\r\n",
        headers={"Content-Type": "message/rfc822"},
        status=422,
        field="headers.To",
    ),
    "unsupported content-type": Case(content=b"hello", headers={"Content-Type": "text/plain"}, status=415),
    "empty idempotency key": Case(json=SIMPLE, headers={"Idempotency-Key": ""}, status=422, field="Idempotency-Key"),
    "blank idempotency key": Case(json=SIMPLE, headers={"Idempotency-Key": "   "}, status=422, field="Idempotency-Key"),
    "idempotency key of 256": Case(
        json=SIMPLE, headers={"Idempotency-Key": "k" * 256}, status=422, field="idempotency-key"
    ),
    "raw over the size limit": Case(
        content=b"From: a@example.com\r\nTo: b@example.com\r\n\r\n" + b"y" * (2 * LIMIT),
        headers={"Content-Type": "message/rfc822"},
        status=413,
        field="message",
    ),
    "json over the size limit": Case(
        json={
            **SIMPLE,
            "attachments": [{"filename": "f", "content_base64": base64.b64encode(b"x" * 2 * LIMIT).decode()}],
        },
        status=413,
        field="message",
    ),
    "request over the read limit": Case(json={**SIMPLE, "text": "z" * HUGE}, status=413, field="message"),
    "wrong api key": Case(json=SIMPLE, headers={"Authorization": "Bearer mg_not-a-key-we-made"}, status=401),
    "key without the prefix": Case(json=SIMPLE, headers={"Authorization": "Bearer secret"}, status=401),
    "bearer without a key": Case(json=SIMPLE, headers={"Authorization": "Bearer"}, status=401),
    "wrong key and long idempotency key": Case(
        json=SIMPLE, headers={"Authorization": "Bearer mg_nope", "Idempotency-Key": "k" * 256}, status=401
    ),
}


@pytest.fixture
async def limited_env(make_env: EnvFactory) -> Env:
    env: Env = await make_env(max_message_bytes=LIMIT)
    return env


@pytest.mark.parametrize("name", list(CASES))
async def test_fast_path_answers_as_the_app(limited_env: Env, name: str) -> None:
    env, case = limited_env, CASES[name]
    key = _key_of(env)
    bearer = {"Authorization": "Bearer {key}"}
    fast_app, reference_app = create_app(env.services), _reference_app(env.services)
    assert _has_fast_path(fast_app)
    answers: dict[str, dict[str, Any]] = {}
    stored: dict[str, dict[str, Any]] = {}
    raws: dict[str, bytes] = {}
    for label, app in (("fast", fast_app), ("reference", reference_app)):
        headers = [
            (header, value.replace("{app}", label[:4] + "-").replace("{key}", key))
            for header, value in [*{**bearer, **case.headers}.items(), *case.repeated]
        ]
        before = await env.stored_count()
        async with _client(app) as client:
            response = await client.post(MESSAGES + case.query, json=case.json, content=case.content, headers=headers)
        answers[label] = _answer(response)
        assert response.status_code == case.status, (label, response.text)
        if case.status == 202:
            assert await env.stored_count() == before + 1, label
            assert response.json()["status"] == "queued"
            message_id = response.json()["id"]
            view = (await env.services.outbox.get(message_id)).to_dict()
            # The size varies with the length of the (random) Message-ID; the bytes are compared below.
            stored[label] = {k: v for k, v in view.items() if k not in ("id", "message_id", "size")}
            raws[label] = _normalized(await env.stored_raw(message_id))
        else:
            assert await env.stored_count() == before, (label, "a refused request stored a message")
            if case.field:
                assert case.field in response.json()["fields"], (label, response.json())
        if case.status == 401:
            assert response.headers["www-authenticate"].startswith("Basic "), label
    assert answers["fast"] == answers["reference"]
    if case.status == 202:
        assert stored["fast"] == stored["reference"]
        assert stored["fast"]["status"] == "queued" and stored["fast"]["recipients"]
        assert raws["fast"] == raws["reference"]


async def test_idempotency_replay_and_reuse_answer_as_the_app(env: Env) -> None:
    """First use, replay and reuse with another body, on each app; then a key first used through the other
    app: the fast path and the route share the idempotency records."""
    bearer = {"Authorization": f"Bearer {_key_of(env)}"}
    fast_app, reference_app = create_app(env.services), _reference_app(env.services)
    other = {**SIMPLE, "subject": "another"}
    sequences: dict[str, list[dict[str, Any]]] = {}
    ids: dict[str, str] = {}
    for label, app in (("fast", fast_app), ("reference", reference_app)):
        key = {**bearer, "Idempotency-Key": f"order-{label}"}
        async with _client(app, key) as client:
            body = json.dumps(SIMPLE).encode()
            first = await client.post(MESSAGES, content=body, headers={"Content-Type": "application/json"})
            again = await client.post(MESSAGES, content=body, headers={"Content-Type": "application/json"})
            # Same media type and bytes, another spelling of the Content-Type: still the same request.
            spelled = await client.post(
                MESSAGES, content=body, headers={"Content-Type": "Application/JSON; charset=utf-8"}
            )
            reused = await client.post(MESSAGES, json=other)
            raw_reuse = await client.post(MESSAGES, content=RAW, headers={"Content-Type": "message/rfc822"})
        assert first.status_code == 202 and "idempotent-replayed" not in first.headers, label
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true", label
        assert again.json()["id"] == first.json()["id"] == spelled.json()["id"], label
        assert reused.status_code == 422 and "Idempotency-Key" in reused.json()["fields"], (label, reused.text)
        assert raw_reuse.status_code == 422 and "Idempotency-Key" in raw_reuse.json()["fields"], label
        sequences[label] = [_answer(r) for r in (first, again, spelled, reused, raw_reuse)]
        ids[label] = first.json()["id"]
    assert sequences["fast"] == sequences["reference"]
    assert ids["fast"] != ids["reference"]
    assert await env.stored_count() == 2

    # Across the two ways: a key used through the route is replayed by the fast path, and the other way round.
    for label, app in (("fast", fast_app), ("reference", reference_app)):
        other_label = "reference" if label == "fast" else "fast"
        async with _client(app, {**bearer, "Idempotency-Key": f"order-{other_label}"}) as client:
            replay = await client.post(
                MESSAGES, content=json.dumps(SIMPLE).encode(), headers={"Content-Type": "application/json"}
            )
            conflict = await client.post(MESSAGES, json=other)
        assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true", label
        assert replay.json()["id"] == ids[other_label], label
        assert conflict.status_code == 422, label
    assert await env.stored_count() == 2


# -- 2. the fast path is taken for a Bearer POST, and for nothing else -----------------------------------


@dataclass
class Recorder:
    """Stands in for ``require_admin`` (and calls it): which requests reached the route's dependencies."""

    calls: list[str] = field(default_factory=list)

    def dependency(self) -> Callable[[Request, Services], Awaitable[str]]:
        async def recording_require_admin(request: Request, services: ServicesDep) -> str:
            self.calls.append(f"{request.method} {request.url.path}")
            return await require_admin(request, services)

        return recording_require_admin


@pytest.fixture
def recorded(env: Env) -> tuple[FastAPI, Recorder]:
    app = create_app(env.services)
    recorder = Recorder()
    app.dependency_overrides[require_admin] = recorder.dependency()
    return app, recorder


async def test_bearer_post_does_not_reach_the_route(env: Env, recorded: tuple[FastAPI, Recorder]) -> None:
    app, recorder = recorded
    bearer = {"Authorization": f"Bearer {_key_of(env)}"}
    async with _client(app, bearer) as client:
        # The override is in force: a request that goes through the app calls it.
        listed = await client.get(MESSAGES)
        assert listed.status_code == 200 and recorder.calls == [f"GET {MESSAGES}"]
        recorder.calls.clear()

        posted = await client.post(MESSAGES, json=SIMPLE)
        assert posted.status_code == 202, posted.text
        raw = await client.post(MESSAGES, content=RAW, headers={"Content-Type": "message/rfc822"})
        assert raw.status_code == 202, raw.text
        refused = await client.post(MESSAGES, json={**SIMPLE, "to": []})  # errors are answered there too
        assert refused.status_code == 422, refused.text
        lowercase = await client.post(MESSAGES, json=SIMPLE, headers={"Authorization": f"bearer {_key_of(env)}"})
        assert lowercase.status_code == 202, lowercase.text
        assert recorder.calls == [], "a Bearer POST to the messages path went through the route"
    assert await env.stored_count() == 3


async def test_other_requests_reach_the_route(env: Env, recorded: tuple[FastAPI, Recorder]) -> None:
    app, recorder = recorded
    key = _key_of(env)
    async with _client(app) as client:
        basic = await client.post(MESSAGES, json=SIMPLE, headers=basic_auth())
        assert basic.status_code == 202, basic.text
        listed = await client.get(MESSAGES, headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200
        shown = await client.get(f"{MESSAGES}/{basic.json()['id']}", headers={"Authorization": f"Bearer {key}"})
        assert shown.status_code == 200
        retried = await client.post(
            f"{MESSAGES}/{basic.json()['id']}/retry", headers={"Authorization": f"Bearer {key}"}
        )
        assert retried.status_code == 200
        wrong = await client.post(MESSAGES, json=SIMPLE, headers={"Authorization": "Bearer mg_wrong"})
        assert wrong.status_code == 401
        long_key = await client.post(
            MESSAGES, json=SIMPLE, headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "k" * 256}
        )
        assert long_key.status_code == 422
        anonymous = await client.post(MESSAGES, json=SIMPLE)
        assert anonymous.status_code == 401
    assert recorder.calls == [
        f"POST {MESSAGES}",
        f"GET {MESSAGES}",
        f"GET {MESSAGES}/{basic.json()['id']}",
        f"POST {MESSAGES}/{basic.json()['id']}/retry",
        f"POST {MESSAGES}",
        f"POST {MESSAGES}",
        f"POST {MESSAGES}",
    ]
    assert await env.stored_count() == 1


async def test_session_post_reaches_the_route_and_keeps_csrf(env: Env, recorded: tuple[FastAPI, Recorder]) -> None:
    app, recorder = recorded
    async with _client(app) as browser:
        assert (await login(browser)).status_code == 303
        token = await form_token(browser)
        recorder.calls.clear()
        without_token = await browser.post(MESSAGES, json=SIMPLE)
        assert without_token.status_code == 403, without_token.text  # the session middleware refuses it
        with_token = await browser.post(MESSAGES, json=SIMPLE, headers={"X-CSRF-Token": token})
        assert with_token.status_code == 202, with_token.text
    assert recorder.calls == [f"POST {MESSAGES}"]
    assert await env.stored_count() == 1


# -- 3. a deleted key --------------------------------------------------------------------------------------


async def test_deleted_api_key_gets_the_apps_401(env: Env, recorded: tuple[FastAPI, Recorder]) -> None:
    app, recorder = recorded
    doomed = await env.services.admins.create_api_key("doomed")
    async with _client(app, {"Authorization": f"Bearer {doomed.key}"}) as client:
        used = await client.post(MESSAGES, json=SIMPLE)  # verified (and remembered) by the fast path
        assert used.status_code == 202, used.text
        assert recorder.calls == []
        await env.services.admins.delete_api_key(doomed.id)
        refused = await client.post(MESSAGES, json=SIMPLE)
        refused_raw = await client.post(MESSAGES, content=RAW, headers={"Content-Type": "message/rfc822"})
    for response in (refused, refused_raw):
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Basic ")
    # The app answered (its dependency ran), not the fast path.
    assert recorder.calls == [f"POST {MESSAGES}", f"POST {MESSAGES}"]
    assert await env.stored_count() == 1
    # The other key still works, through the fast path.
    async with _client(app, {"Authorization": f"Bearer {_key_of(env)}"}) as client:
        assert (await client.post(MESSAGES, json=SIMPLE)).status_code == 202
    assert len(recorder.calls) == 2


async def test_key_deleted_by_another_process_stops_within_the_cache_time(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verified key is trusted for API_KEY_CACHE_SECONDS without asking the database; a deletion in
    another process (other Services over the same database) takes effect once that has passed."""
    monkeypatch.setattr(admins_module, "API_KEY_CACHE_SECONDS", 0.2)
    doomed = await env.services.admins.create_api_key("doomed elsewhere")
    app = create_app(env.services)
    other = await build_services(env.settings, clock=env.clock)
    try:
        async with _client(app, {"Authorization": f"Bearer {doomed.key}"}) as client:
            assert (await client.post(MESSAGES, json=SIMPLE)).status_code == 202
            await other.admins.delete_api_key(doomed.id)
            await asyncio.sleep(0.3)
            refused = await client.post(MESSAGES, json=SIMPLE)
    finally:
        await other.aclose()
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"].startswith("Basic ")
    assert await env.stored_count() == 1

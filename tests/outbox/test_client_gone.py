"""A client that goes away before it has sent the whole request: nothing stored, nothing held, no error.

uvicorn logged such a request as a 500 with a traceback ("Exception in ASGI application"), for starlette's
ClientDisconnect raised while the body was read. It is answered 499 now (nginx's "client closed request",
which nobody receives but the access log shows), the same way with an API key (the fast path) and with
HTTP Basic (FastAPI's routing).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from starlette.types import Message

from mailgate.web import create_app
from mailgate.web.accesslog import AccessLog

from ..conftest import ADMIN_PASSWORD
from .conftest import API, Env, EnvFactory


def post_scope(authorization: str, declared: int) -> dict[str, Any]:
    """The ASGI scope of ``POST .../email/messages`` with JSON of ``declared`` bytes (Content-Length)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"{API}/email/messages",
        "raw_path": f"{API}/email/messages".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost:8080"),
            (b"authorization", authorization.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(declared).encode()),
        ],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8080),
    }


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
@pytest.mark.parametrize("auth", ["api key", "basic"])
async def test_a_client_gone_mid_body_is_a_499_and_changes_nothing(
    make_env: EnvFactory, auth: str, large: bool
) -> None:
    env: Env = await make_env()
    if auth == "api key":
        token = (await env.services.admins.create_api_key("gone")).key
        authorization = f"Bearer {token}"
    else:
        authorization = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    declared = 5 * 1024 * 1024 if large else 5000
    scope = post_scope(authorization, declared)
    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"to": ["bob@example.com"], "text": "', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return incoming.pop(0) if len(incoming) > 1 else incoming[0]

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    log = io.StringIO()
    await AccessLog(create_app(env.services), stream=log)(scope, receive, send)  # raises nothing
    assert sent and sent[0]["type"] == "http.response.start" and sent[0]["status"] == 499
    assert log.getvalue().endswith(f'"POST {API}/email/messages HTTP/1.1" 499 Client Closed Request\n')
    assert await env.stored_count() == 0
    assert env.services.outbox.intake.reserved == 0 and env.services.outbox.intake.waiting == 0

"""Issue 24, HTTP delivery end to end on loopback: consent for the delivery's scopes at the sandbox, then the
outbox sends through its Microsoft Graph or Gmail API endpoint (Bcc, size limits, throttling, a refused token,
a missing permission, Test connection)."""

from __future__ import annotations

import base64
from urllib.parse import unquote

import pytest
from sqlalchemy import text

from mailgate.errors import PermanentDeliveryError
from mailgate.gmail import GMAIL_MAX_MESSAGE_BYTES
from mailgate.store import Database

from .conftest import API, SandboxEnv

GRAPH_SCOPE = "https://graph.microsoft.com/Mail.Send"
GMAIL_SCOPE = "https://www.googleapis.com/auth/gmail.send"


async def use_delivery(s: SandboxEnv, delivery: str, provider: str = "microsoft") -> None:
    """Choose the provider and the delivery, then consent (the consent page grants what mailgate asks)."""
    h = s.harness
    if provider != "microsoft":
        await h.api.put(f"{API}/email/server", json={"delivery": "smtp"})  # graph would not fit Google
        await h.configure(provider)  # the fixture configured microsoft
    r = await h.api.put(f"{API}/email/server", json={"delivery": delivery})
    assert r.status_code == 200, r.text
    assert r.json()["delivery"] == delivery
    assert (await h.authorize()).status_code == 200


def only_message(s: SandboxEnv) -> tuple[tuple[str, ...], bytes]:
    [received] = s.sandbox.messages
    return received.rcpt_tos, received.raw


@pytest.mark.parametrize(
    ("provider", "delivery", "scope"), [("microsoft", "graph", GRAPH_SCOPE), ("google", "gmail_api", GMAIL_SCOPE)]
)
async def test_consent_for_the_api_then_delivered_with_bcc_not_leaked(
    sandbox_env: SandboxEnv, provider: str, delivery: str, scope: str
) -> None:
    s, env = sandbox_env, sandbox_env.env
    await use_delivery(s, delivery, provider)
    start = await env.api.get(f"{API}/oauth/authorize")
    asked = unquote(start.headers["location"].replace("+", " "))
    assert f"scope={scope} " in asked and "SMTP.Send" not in asked and "mail.google.com" not in asked
    message_id = await env.post(to=["bob@example.com"], cc=["carol@example.com"], bcc=["hidden@example.com"])
    assert await env.worker.drain() == 1
    shown = await env.status(message_id)
    assert shown["status"] == "sent", shown
    rcpts, raw = only_message(s)
    assert set(rcpts) == {"bob@example.com", "carol@example.com", "hidden@example.com"}
    assert b"hidden@example.com" not in raw and b"\nBcc:" not in raw and b"bob@example.com" in raw
    counters = s.sandbox.mail_api.counters
    assert counters["graph_messages" if delivery == "graph" else "gmail_messages"] == 1
    assert s.sandbox.stats()["smtp_messages"] == 0  # not over SMTP


async def test_graph_refuses_an_oversize_message_up_front_naming_the_limit(sandbox_env: SandboxEnv) -> None:
    s, env = sandbox_env, sandbox_env.env
    await use_delivery(s, "graph")
    big = base64.b64encode(b"\x00" * (3_200_000)).decode()  # ~4.4 MB as base64 MIME
    message_id = await env.post(attachments=[{"filename": "big.bin", "content_base64": big}])
    await env.worker.drain()
    shown = await env.status(message_id)
    assert shown["status"] == "failed", shown
    assert "4 MB" in shown["last_error"]["message"] and "SMTP" in shown["last_error"]["message"]
    assert s.sandbox.mail_api.counters["graph_messages"] == 0 and not s.sandbox.messages


async def test_gmail_refuses_over_35_mb_up_front(sandbox_env: SandboxEnv) -> None:
    s = sandbox_env
    await use_delivery(s, "gmail_api", "google")
    server = await s.env.services.mailer.server()
    transport = s.env.services.mailer.http_transport(server)
    raw = b"From: alice@sandbox.test\r\nTo: bob@example.com\r\nSubject: big\r\n\r\n" + b"x" * GMAIL_MAX_MESSAGE_BYTES
    with pytest.raises(PermanentDeliveryError, match="35 MB"):
        await transport.send("alice@sandbox.test", ["bob@example.com"], raw)
    assert not s.sandbox.messages


async def test_throttled_429_is_retried_not_before_retry_after(sandbox_env: SandboxEnv) -> None:
    s, env = sandbox_env, sandbox_env.env
    await use_delivery(s, "graph")
    s.sandbox.mail_api.throttle(1, retry_after=600)
    message_id = await env.post()
    await env.worker.drain()
    shown = await env.status(message_id)
    assert shown["status"] == "retrying" and shown["last_error"]["code"] == "delivery_transient", shown
    assert "Retry-After: 600 s" in shown["last_error"]["message"]
    # The outbox's own backoff would retry after 15-30 s; the API asked for 600.
    env.clock.advance(599)
    assert await env.worker.drain() == 0
    env.clock.advance(2)
    assert await env.worker.drain() == 1
    assert (await env.status(message_id))["status"] == "sent"
    assert s.sandbox.mail_api.counters["throttled"] == 1


async def test_a_refused_token_is_refreshed_once_then_sent(sandbox_env: SandboxEnv) -> None:
    s, env = sandbox_env, sandbox_env.env
    await use_delivery(s, "gmail_api", "google")
    await env.post(to=["first@example.com"])
    await env.worker.drain()
    # The provider kills the access token before mailgate's clock says it expires: Gmail answers 401.
    s.sandbox.expire_access_tokens()
    second = await env.post(to=["second@example.com"])
    await env.worker.drain()
    assert (await env.status(second))["status"] == "sent"
    assert s.sandbox.stats()["token_requests"]["refresh_token"] == 1
    assert s.sandbox.mail_api.counters["gmail_401"] == 1


async def test_missing_permission_holds_the_messages_until_authorized_again(sandbox_env: SandboxEnv) -> None:
    s, env, h = sandbox_env, sandbox_env.env, sandbox_env.harness
    await use_delivery(s, "graph")
    s.sandbox.mail_api.permission_denied = True  # the admin removed Mail.Send from the app registration
    ids = [await env.post(to=[f"r{i}@example.com"]) for i in range(3)]
    await env.worker.drain()
    shown = [await env.status(i) for i in ids]
    assert {x["status"] for x in shown} == {"held"}, shown
    assert shown[0]["last_error"]["code"] == "credentials_rejected"
    assert "Mail.Send" in shown[0]["last_error"]["message"]
    test = (await env.api.post(f"{API}/email/server/test")).json()
    assert test["ok"] is False and [x["name"] for x in test["steps"]] == ["token", "permission"]
    assert test["steps"][1]["ok"] is False and "Mail.Send" in test["steps"][1]["hint"]
    # Granted again and consented again: the held messages go out by themselves.
    s.sandbox.mail_api.permission_denied = False
    env.clock.advance(60)
    assert (await h.authorize()).status_code == 200
    await env.worker.drain()
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}


async def test_test_connection_probes_without_sending_then_sends(sandbox_env: SandboxEnv) -> None:
    s, env = sandbox_env, sandbox_env.env
    for provider, delivery in (("microsoft", "graph"), ("google", "gmail_api")):
        await use_delivery(s, delivery, provider)
        probe = (await env.api.post(f"{API}/email/server/test")).json()
        assert probe["ok"] is True and [x["name"] for x in probe["steps"]] == ["token", "permission"], probe
        assert "nothing was sent" in probe["steps"][1]["detail"]
        assert not s.sandbox.messages
        sent = (await env.api.post(f"{API}/email/server/test", json={"send_to": "bob@example.com"})).json()
        assert sent["ok"] is True and sent["steps"][-1]["name"] == "send", sent
        assert [m.rcpt_tos for m in s.sandbox.messages] == [("bob@example.com",)]
        s.sandbox.inbox.clear()
    assert [x.name for x in await env.services.mailer.probe()] == ["token", "permission"]  # for `mailgate doctor`


async def test_changing_the_delivery_needs_a_new_consent(sandbox_env: SandboxEnv) -> None:
    s, env, h = sandbox_env, sandbox_env.env, sandbox_env.harness
    assert (await h.authorize()).status_code == 200  # for SMTP
    assert (await h.view())["token_status"] == "valid"
    r = await env.api.put(f"{API}/email/server", json={"delivery": "graph"})
    assert r.status_code == 200, r.text
    view = await h.view()
    assert view["token_status"] == "reauthorization_required" and GRAPH_SCOPE in view["token_status_reason"]
    message_id = await env.post()
    await env.worker.drain()
    assert (await env.status(message_id))["status"] == "held"
    assert (await h.authorize()).status_code == 200
    await env.worker.drain()
    assert (await env.status(message_id))["status"] == "sent"
    assert s.sandbox.mail_api.counters["graph_messages"] == 1


async def test_delivery_is_validated(sandbox_env: SandboxEnv) -> None:
    env = sandbox_env.env
    bad = await env.api.put(f"{API}/email/server", json={"delivery": "carrier-pigeon"})
    assert bad.status_code == 422 and "delivery" in bad.json()["fields"]
    wrong = await env.api.put(f"{API}/email/server", json={"delivery": "gmail_api"})  # the provider is microsoft
    assert wrong.status_code == 422 and "Google" in wrong.json()["fields"]["delivery"]
    password = await env.api.put(f"{API}/email/server", json={"delivery": "graph", "authentication": "password",
                                                                "password": "x", "username": "a@b.test"})  # fmt: skip
    assert password.status_code == 422 and "authentication" in password.json()["fields"]
    # No SMTP host needed for an HTTP delivery.
    ok = await env.api.put(f"{API}/email/server", json={"delivery": "graph", "host": ""})
    assert ok.status_code == 200 and ok.json()["delivery"] == "graph"
    assert (await env.api.get(f"{API}/email/server")).json()["delivery"] == "graph"


async def test_migration_keeps_smtp_for_existing_accounts(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.migrate("0008_relay_users")
        async with db.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO email_server (account_id, host, port, security, username, sender, authentication, "
                    "password_enc, ca_file, updated_at) VALUES ('default', 'smtp.example.com', 587, 'starttls', "
                    "'a@example.com', 'a@example.com', 'oauth', '', '', '2026-01-01 00:00:00')"
                )
            )
        await db.migrate()
        async with db.engine.connect() as connection:
            row = (await connection.execute(text("SELECT host, delivery FROM email_server"))).one()
        assert tuple(row) == ("smtp.example.com", "smtp")
    finally:
        await db.close()

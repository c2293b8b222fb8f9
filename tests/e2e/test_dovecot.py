"""mailgate against a real, strict submission server: Dovecot, validating the sandbox's tokens (RFC 7662).

Issue 19 point 2: Dovecot refuses an AUTH line over 512 octets (``500 5.5.2 Line too long``) and the
sandbox's access tokens are Entra-sized (> 2 KB), so these pass only when the token follows the ``334``.
Dovecot relays what it accepts to an aiosmtpd sink, where the tests look for the message.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import aiosmtplib
import pytest

from mailgate.errors import SmtpAuthenticationError
from mailgate.smtp import SmtpConnection, build_message
from mailgate.smtp.tls import client_context
from mailgate.types import Authentication, EmailServerConfig, Security

from ..conftest import require_component
from ..smtp.dovecot import RunningDovecot, dovecot_available, running_dovecot
from ..smtp.servers import FakeTokenSource, Mailbox, RunningServer, ServerController
from .harness import API, Harness

ALICE = "alice@sandbox.test"


@pytest.fixture
def sink() -> Iterator[RunningServer]:
    """The plain SMTP server Dovecot relays to (loopback, no TLS, no AUTH).

    It must not offer AUTH (aiosmtpd offers it only after TLS by default): to a relay that does, Dovecot
    passes ``MAIL FROM ... AUTH=<user>`` (RFC 4954 s5), which aiosmtpd refuses with 555.
    """
    handler = Mailbox(user=ALICE)
    controller = ServerController(handler)
    controller.start()
    try:
        yield RunningServer("127.0.0.1", controller.port, Security.NONE, handler)
    finally:
        controller.stop()


@pytest.fixture
def dovecot(harness: Harness, sink: RunningServer, request: pytest.FixtureRequest) -> Iterator[RunningDovecot]:
    """Dovecot offering XOAUTH2 and OAUTHBEARER, or only the mechanisms the test is parametrized with."""
    require_component(dovecot_available(), "Dovecot (Debian packages dovecot-core dovecot-submissiond)")
    mechanisms = getattr(request, "param", ("xoauth2", "oauthbearer"))
    with running_dovecot(f"{harness.sandbox.base_url}/introspect", sink.port, mechanisms) as server:
        yield server


def dovecot_config(dovecot: RunningDovecot) -> EmailServerConfig:
    return EmailServerConfig(
        host=dovecot.host,
        port=dovecot.port,
        security=Security.STARTTLS,
        username=ALICE,
        sender=ALICE,
        authentication=Authentication.OAUTH,
        ca_file=dovecot.ca_file,
    )


async def test_dovecot_refuses_a_long_token_on_the_auth_line(dovecot: RunningDovecot, harness: Harness) -> None:
    # The premise: a client that puts the token on the AUTH line (as aiosmtplib's own auth_xoauth2 does)
    # is refused, so the tests below cannot pass by accident.
    token = str(harness.sandbox.mint_tokens(ALICE)["access_token"])
    assert len(token) > 2048
    context = await asyncio.to_thread(client_context, dovecot.ca_file)
    async with aiosmtplib.SMTP(hostname=dovecot.host, port=dovecot.port, start_tls=True, tls_context=context) as smtp:
        initial = base64.b64encode(f"user={ALICE}\x01auth=Bearer {token}\x01\x01".encode())
        reply = await smtp.execute_command(b"AUTH", b"XOAUTH2", initial)
    assert reply.code == 500 and "too long" in reply.message.lower(), reply


async def test_mailgate_authorizes_then_delivers_through_dovecot(
    dovecot: RunningDovecot, harness: Harness, sink: RunningServer
) -> None:
    h = harness
    await h.configure("microsoft")
    assert (await h.authorize()).status_code == 200
    server = {
        "host": dovecot.host,
        "port": dovecot.port,
        "security": "starttls",
        "authentication": "oauth",
        "username": ALICE,
        "sender": ALICE,
        "ca_file": dovecot.ca_file,
    }
    assert (await h.api.put(f"{API}/email/server", json=server)).status_code == 200
    test = await h.api.post(f"{API}/email/server/test", json={"send_to": "bob@example.com"})
    assert test.status_code == 200, test.text
    assert test.json()["ok"] is True, (test.json(), dovecot.log_text())
    auth = next(step for step in test.json()["steps"] if step["name"] == "auth")
    assert "XOAUTH2" in auth["detail"]
    (received,) = sink.handler.messages
    assert received.mail_from == ALICE and received.rcpt_tos == ("bob@example.com",)
    assert h.sandbox.stats()["token_requests"].get("authorization_code") == 1


@pytest.mark.parametrize(
    ("dovecot", "mechanism"), [(("xoauth2",), "XOAUTH2"), (("oauthbearer",), "OAUTHBEARER")], indirect=["dovecot"]
)
async def test_a_rejected_long_token_gets_the_error_challenge_then_a_fresh_one_works(
    dovecot: RunningDovecot, harness: Harness, sink: RunningServer, mechanism: str
) -> None:
    stale = str(harness.sandbox.mint_tokens(ALICE)["access_token"])
    harness.sandbox.state.revoke(stale)
    fresh = str(harness.sandbox.mint_tokens(ALICE)["access_token"])
    assert len(stale) > 2048 and len(fresh) > 2048
    tokens = FakeTokenSource([stale, fresh])
    context = await asyncio.to_thread(client_context, dovecot.ca_file)
    async with SmtpConnection(dovecot_config(dovecot), tokens, ssl_context=context) as conn:
        assert conn.mechanism == mechanism
        await conn.send_message(build_message(sender=ALICE, to=["carol@example.com"], subject="again", text="x\n"))
        assert "after refreshing" in conn.steps[-1].detail, conn.steps
    assert tokens.calls == [False, True]
    assert [m.rcpt_tos for m in sink.handler.messages] == [("carol@example.com",)]


async def test_two_rejected_tokens_end_with_dovecots_535(dovecot: RunningDovecot, harness: Harness) -> None:
    never = "EwB" + "n0t-issued" * 220
    context = await asyncio.to_thread(client_context, dovecot.ca_file)
    conn = SmtpConnection(dovecot_config(dovecot), FakeTokenSource([never, never + "2"]), ssl_context=context)
    with pytest.raises(SmtpAuthenticationError) as caught:
        await conn.connect()
    assert caught.value.reply_code == 535
    assert never not in str(caught.value)

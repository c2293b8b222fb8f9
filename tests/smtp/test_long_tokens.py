"""Entra-sized tokens against a server with the standard 512-octet AUTH line (RFC 4954 s4).

The test servers (tests/smtp/servers.py) keep aiosmtpd's default AUTH command limit, as Dovecot and Postfix
do: an initial response that makes the AUTH line longer must follow the server's ``334`` instead.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from mailgate.errors import SmtpAuthenticationError, SmtpTransientError
from mailgate.smtp import SmtpConnection, build_message
from mailgate.smtp.auth import AUTH_LINE_LIMIT, initial_response_fits, xoauth2_initial_response

from .conftest import ServerFactory
from .servers import FakeTokenSource, Mailbox

# Entra access tokens are JWTs of 1,500-2,500+ characters and grow with claims.
LONG = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "A1b2-C3d4_E5f6" * 160
FRESH = LONG.replace("A1b2", "Z9y8")


def message() -> Any:
    return build_message(sender="user@example.com", to=["rcpt@example.com"], subject="Long", text="Hi.\n")


def test_the_boundary_is_512_octets_with_crlf() -> None:
    assert len(LONG) > 2048
    fits = "A" * (AUTH_LINE_LIMIT - len("AUTH XOAUTH2 \r\n"))
    assert initial_response_fits("XOAUTH2", fits)
    assert not initial_response_fits("XOAUTH2", fits + "A")
    assert not initial_response_fits("XOAUTH2", xoauth2_initial_response("user@example.com", LONG))


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_a_long_token_follows_the_334_and_the_message_is_delivered(
    start_server: ServerFactory, client_context: ssl.SSLContext, mechanism: str
) -> None:
    server = start_server(Mailbox(tokens={LONG}), mechanisms=[mechanism])
    async with SmtpConnection(server.config(), FakeTokenSource([LONG]), ssl_context=client_context) as conn:
        assert conn.mechanism == mechanism
        await conn.send_message(message())
    assert server.handler.sasl_commands == [mechanism]
    assert server.handler.sasl_inline == [False]
    (attempt,) = server.handler.sasl_attempts
    assert (attempt.mechanism, attempt.user, attempt.token) == (mechanism, "user@example.com", LONG)
    (received,) = server.handler.messages
    assert received.authenticated_as == "user@example.com"


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_a_short_token_still_rides_on_the_auth_line(
    start_server: ServerFactory, client_context: ssl.SSLContext, mechanism: str
) -> None:
    # One round trip fewer for Google's tokens (about 200 characters).
    server = start_server(Mailbox(tokens={"ya29.short"}), mechanisms=[mechanism])
    async with SmtpConnection(server.config(), FakeTokenSource(["ya29.short"]), ssl_context=client_context):
        pass
    assert server.handler.sasl_inline == [True]


@pytest.mark.parametrize(("mechanism", "answer"), [("XOAUTH2", b""), ("OAUTHBEARER", b"\x01")])
async def test_error_challenge_after_a_long_token_is_answered_then_a_fresh_token_is_tried(
    start_server: ServerFactory, client_context: ssl.SSLContext, mechanism: str, answer: bytes
) -> None:
    server = start_server(Mailbox(tokens={FRESH}, failure="gmail"), mechanisms=[mechanism])
    tokens = FakeTokenSource([LONG, FRESH])
    async with SmtpConnection(server.config(), tokens, ssl_context=client_context) as conn:
        await conn.send_message(message())
        assert "after refreshing" in conn.steps[-1].detail
    assert tokens.calls == [False, True]
    assert [a.token for a in server.handler.sasl_attempts] == [LONG, FRESH]
    assert server.handler.challenge_answers == [answer]  # empty line / %x01, as with a short token
    assert server.handler.sasl_inline == [False, False]
    assert len(server.handler.messages) == 1


async def test_two_rejections_of_long_tokens_raise_with_the_challenge(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(Mailbox(tokens={"never"}, failure="gmail"), mechanisms=["XOAUTH2"])
    with pytest.raises(SmtpAuthenticationError) as caught:
        await SmtpConnection(server.config(), FakeTokenSource([LONG, FRESH]), ssl_context=client_context).connect()
    assert caught.value.reply_code == 535 and "status=400" in caught.value.message
    assert "Line too long" not in caught.value.message and "Command line too long" not in caught.value.message
    assert server.handler.challenge_answers == [b"", b""]
    assert LONG not in str(caught.value) and FRESH not in str(caught.value)


class RefusesBareAuth(Mailbox):
    """A server busy right now: it refuses AUTH before any response is sent."""

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            return await super().auth_XOAUTH2(server, args)
        return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")


async def test_a_refused_bare_auth_sends_no_token(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(RefusesBareAuth(tokens={LONG}), mechanisms=["XOAUTH2"])
    tokens = FakeTokenSource([LONG])
    with pytest.raises(SmtpTransientError) as caught:
        await SmtpConnection(server.config(), tokens, ssl_context=client_context).connect()
    assert caught.value.reply_code == 454
    assert server.handler.sasl_attempts == []  # the token never reached the server
    assert tokens.calls == [False]

"""SmtpConnection sending against real aiosmtpd servers (tests/smtp/servers.py), and network failures."""

from __future__ import annotations

import ssl
from email.message import EmailMessage

import pytest

from mailgate.errors import (
    SmtpError,
    SmtpPermanentError,
    SmtpTransientError,
    ValidationError,
)
from mailgate.smtp import SmtpConnection, build_message
from mailgate.types import Authentication, EmailServerConfig, Security

from .conftest import ServerFactory
from .servers import FakeTokenSource, Mailbox


def message(to: str = "rcpt@example.com", subject: str = "Hello", *, cc: tuple[str, ...] = ()) -> EmailMessage:
    return build_message(sender="user@example.com", to=[to], cc=cc, subject=subject, text="Hi there.\n")


# -- sending -------------------------------------------------------------------------------------------


async def test_several_messages_over_one_connection(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server()
    tokens = FakeTokenSource()
    async with SmtpConnection(server.config(), tokens, ssl_context=client_context) as conn:
        for i in range(5):
            result = await conn.send_message(message(subject=f"Message {i}"))
            assert result.accepted == ("rcpt@example.com",)
    received = server.handler.messages
    assert len(received) == 5
    assert len({r.peer for r in received}) == 1  # one connection
    assert server.handler.sasl_commands == ["XOAUTH2"] and tokens.calls == [False]


async def test_send_connects_on_demand_and_reconnects_a_stale_connection(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    # The server drops the connection when the 2nd MAIL arrives, as if it had closed an idle connection.
    server = start_server(Mailbox(disconnect_at="MAIL", disconnect_on={2}))
    conn = SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context)
    await conn.send_message(message(subject="first"))  # connects by itself
    await conn.send_message(message(subject="second"))
    await conn.close()
    received = server.handler.messages
    assert [b"Subject: first" in r.content for r in received] == [True, False]
    assert len({r.peer for r in received}) == 2
    assert server.handler.sasl_commands == ["XOAUTH2", "XOAUTH2"]


async def test_partial_recipient_refusal(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    refusal = "550 5.1.1 The email account that you tried to reach does not exist."
    server = start_server(Mailbox(refuse={"nobody@example.com": refusal}))
    async with SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context) as conn:
        result = await conn.send_message(message(cc=("nobody@example.com",)))
    assert result.accepted == ("rcpt@example.com",)
    assert result.refused == {"nobody@example.com": (550, refusal[4:])}
    assert server.handler.messages[0].rcpt_tos == ("rcpt@example.com",)


@pytest.mark.parametrize(
    ("reply", "error"),
    [("550 5.1.1 No such user", SmtpPermanentError), ("450 4.2.1 Mailbox busy", SmtpTransientError)],
)
async def test_all_recipients_refused(
    start_server: ServerFactory, client_context: ssl.SSLContext, reply: str, error: type[SmtpError]
) -> None:
    server = start_server(Mailbox(refuse={"nobody@example.com": reply}))
    async with SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context) as conn:
        with pytest.raises(error) as caught:
            await conn.send_message(message(to="nobody@example.com"))
        assert "nobody@example.com" in caught.value.message
        assert caught.value.reply_code == int(reply[:3])
        await conn.send_message(message())  # the connection is still usable (RSET)
    assert len(server.handler.messages) == 1


async def test_4xx_at_data_is_transient(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(Mailbox(data_reply="451 4.3.0 Temporary system problem, try again later"))
    async with SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context) as conn:
        with pytest.raises(SmtpTransientError) as caught:
            await conn.send_message(message())
        assert caught.value.reply_code == 451 and caught.value.retryable
        assert conn.is_connected


async def test_552_at_data_is_permanent(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(Mailbox(data_reply="552 5.3.4 Message size exceeds fixed maximum message size"))
    async with SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context) as conn:
        with pytest.raises(SmtpPermanentError) as caught:
            await conn.send_message(message())
    assert "25 MB" in caught.value.hint and not caught.value.retryable


@pytest.mark.parametrize("tls", ["none", "starttls"])
async def test_server_disconnect_mid_session_is_transient(
    start_server: ServerFactory, client_context: ssl.SSLContext, tls: str
) -> None:
    server = start_server(Mailbox(disconnect_at="DATA"), tls=tls)
    config = server.config(authentication=Authentication.NONE)
    async with SmtpConnection(config, ssl_context=client_context) as conn:
        with pytest.raises(SmtpTransientError, match="closed the connection"):
            await conn.send_message(message())
        assert not conn.is_connected
    assert server.handler.messages == []


async def test_envelope_is_validated(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server()
    async with SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context) as conn:
        with pytest.raises(ValidationError) as caught:
            await conn.send_message(message(), recipients=["a@example.com>\r\nRCPT TO:<b@example.com"])
        assert "recipients" in caught.value.errors
        await conn.send("bounce@example.com", ["other@example.com"], message().as_bytes())
    assert server.handler.messages[0].mail_from == "bounce@example.com"
    assert server.handler.messages[0].rcpt_tos == ("other@example.com",)


# -- network -------------------------------------------------------------------------------------------


def plain_config(port: int, timeout: float = 10.0) -> EmailServerConfig:
    return EmailServerConfig(
        host="127.0.0.1",
        port=port,
        security=Security.NONE,
        username="",
        sender="user@example.com",
        authentication=Authentication.NONE,
        timeout=timeout,
    )


async def test_connection_refused_is_transient(closed_port: int) -> None:
    conn = SmtpConnection(plain_config(closed_port))
    with pytest.raises(SmtpTransientError) as caught:
        await conn.connect()
    assert "Nothing listens" in caught.value.hint
    assert [(s.name, s.ok) for s in conn.steps] == [("connect", False)]


async def test_timeout_is_transient(silent_server: int) -> None:
    with pytest.raises(SmtpTransientError, match="Timed out") as caught:
        await SmtpConnection(plain_config(silent_server, timeout=0.3)).connect()
    assert "465 needs ssl" in caught.value.hint

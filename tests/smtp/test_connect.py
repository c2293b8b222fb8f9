"""SmtpConnection setting up against real aiosmtpd servers (tests/smtp/servers.py): AUTH and TLS."""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

from mailgate.errors import (
    ConfigurationError,
    ReauthorizationRequiredError,
    SmtpAuthenticationError,
    SmtpPermanentError,
    SmtpTransientError,
)
from mailgate.smtp import SmtpConnection, build_message
from mailgate.types import Authentication, Security

from .conftest import ServerFactory
from .servers import MS_AUTH_DISABLED, FakeTokenSource, Mailbox, running_server

LONG_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "A1b2-C3d4_E5f6" * 220  # > 3 KB, like Entra's


def message(to: str = "rcpt@example.com", subject: str = "Hello", *, cc: tuple[str, ...] = ()) -> EmailMessage:
    return build_message(sender="user@example.com", to=[to], cc=cc, subject=subject, text="Hi there.\n")


def names(conn: SmtpConnection) -> list[str]:
    return [step.name for step in conn.steps]


# -- OAuth -------------------------------------------------------------------------------------------


async def test_xoauth2_with_a_3kb_token_then_send(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    assert len(LONG_TOKEN) > 3000
    server = start_server(Mailbox(tokens={LONG_TOKEN}))
    tokens = FakeTokenSource([LONG_TOKEN])
    async with SmtpConnection(server.config(), tokens, ssl_context=client_context) as conn:
        assert conn.is_connected and conn.mechanism == "XOAUTH2"
        result = await conn.send_message(message())
    assert not conn.is_connected
    assert result.accepted == ("rcpt@example.com",) and result.refused == {}
    assert "queued as 1" in result.reply
    assert tokens.calls == [False]
    (attempt,) = server.handler.sasl_attempts
    assert (attempt.mechanism, attempt.user, attempt.token) == ("XOAUTH2", "user@example.com", LONG_TOKEN)
    (received,) = server.handler.messages
    assert received.authenticated_as == "user@example.com"
    assert received.rcpt_tos == ("rcpt@example.com",)
    assert b"Subject: Hello" in received.content
    assert names(conn) == ["connect", "ehlo", "tls", "ehlo", "auth"]
    assert all(step.ok for step in conn.steps)
    assert "STARTTLS" in conn.steps[1].detail and "before TLS" in conn.steps[1].detail
    assert "TLSv1." in conn.steps[2].detail
    assert "XOAUTH2" in conn.steps[3].detail
    assert all(LONG_TOKEN not in step.detail for step in conn.steps)


async def test_gmail_error_challenge_forces_one_refresh(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(Mailbox(tokens={"fresh"}, failure="gmail"))
    tokens = FakeTokenSource(["stale", "fresh"])
    async with SmtpConnection(server.config(), tokens, ssl_context=client_context) as conn:
        await conn.send_message(message())
        auth_detail = conn.steps[-1].detail
    assert tokens.calls == [False, True]  # force_refresh=True exactly once
    assert [a.token for a in server.handler.sasl_attempts] == ["stale", "fresh"]
    assert server.handler.challenge_answers == [b""]  # the error challenge was answered with an empty line
    assert server.handler.sasl_commands == ["XOAUTH2", "XOAUTH2"]  # on the same connection
    assert "after refreshing" in auth_detail
    assert len(server.handler.messages) == 1


async def test_second_rejection_raises_with_the_gmail_hint(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(Mailbox(tokens={"good"}, failure="gmail"))
    tokens = FakeTokenSource(["bad-1", "bad-2"])
    conn = SmtpConnection(server.config(), tokens, ssl_context=client_context)
    with pytest.raises(SmtpAuthenticationError) as caught:
        await conn.connect()
    err = caught.value
    assert err.reply_code == 535 and "5.7.8" in err.message
    assert "https://mail.google.com/" in err.hint and "consent" in err.hint
    assert "status=400" in err.message  # the decoded error challenge
    assert tokens.calls == [False, True]
    assert server.handler.challenge_answers == [b"", b""]
    assert not conn.is_connected
    assert conn.steps[-1].name == "auth" and not conn.steps[-1].ok and conn.steps[-1].hint == err.hint
    assert "bad-1" not in str(err) and "bad-2" not in str(err)


async def test_microsoft_token_rejected(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(Mailbox(tokens={"good"}, failure="microsoft"))
    tokens = FakeTokenSource(["bad-1", "bad-2"])
    with pytest.raises(SmtpAuthenticationError) as caught:
        await SmtpConnection(server.config(), tokens, ssl_context=client_context).connect()
    assert "5.7.3" in caught.value.message
    assert "SMTP.Send" in caught.value.hint
    assert tokens.calls == [False, True]
    assert server.handler.challenge_answers == []


async def test_microsoft_smtp_auth_disabled_is_not_retried(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(Mailbox(tokens={"good"}, failure=MS_AUTH_DISABLED))
    tokens = FakeTokenSource(["good-but-refused"])
    with pytest.raises(SmtpAuthenticationError) as caught:
        await SmtpConnection(server.config(), tokens, ssl_context=client_context).connect()
    assert "5.7.139" in caught.value.message
    assert "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false" in caught.value.hint
    assert tokens.calls == [False]  # a fresh token cannot fix a disabled SMTP AUTH


async def test_refresh_reconnects_when_the_server_closed_after_rejecting(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(Mailbox(tokens={"fresh"}, failure="microsoft", close_after_auth_failure=True))
    tokens = FakeTokenSource(["stale", "fresh"])
    async with SmtpConnection(server.config(), tokens, ssl_context=client_context) as conn:
        await conn.send_message(message())
        assert names(conn).count("connect") == 2
    assert tokens.calls == [False, True]
    assert len(server.handler.messages) == 1


async def test_oauthbearer_only_server(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(Mailbox(tokens={"good"}), mechanisms=["OAUTHBEARER"])
    async with SmtpConnection(server.config(), FakeTokenSource(["good"]), ssl_context=client_context) as conn:
        assert conn.mechanism == "OAUTHBEARER"
        await conn.send_message(message())
    (attempt,) = server.handler.sasl_attempts
    assert (attempt.user, attempt.host, attempt.port) == ("user@example.com", "127.0.0.1", str(server.port))
    assert server.handler.messages[0].authenticated_as == "user@example.com"


async def test_oauthbearer_error_challenge_is_answered_with_0x01(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(Mailbox(tokens={"fresh"}), mechanisms=["OAUTHBEARER"])
    tokens = FakeTokenSource(["stale", "fresh"])
    async with SmtpConnection(server.config(), tokens, ssl_context=client_context):
        pass
    assert server.handler.challenge_answers == [b"\x01"]
    assert tokens.calls == [False, True]


async def test_no_oauth_mechanism_offered(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(mechanisms=["PLAIN", "LOGIN"])
    with pytest.raises(SmtpPermanentError) as caught:
        await SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context).connect()
    assert "PLAIN" in caught.value.message and "XOAUTH2 or OAUTHBEARER" in caught.value.message
    assert server.handler.sasl_commands == []


async def test_token_endpoint_failure_is_an_auth_step(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server()
    error = ReauthorizationRequiredError("The refresh token was revoked.", hint="Authorize again.")
    conn = SmtpConnection(server.config(), FakeTokenSource(error=error), ssl_context=client_context)
    with pytest.raises(ReauthorizationRequiredError):
        await conn.connect()
    assert conn.steps[-1].name == "auth" and conn.steps[-1].hint == "Authorize again."
    assert server.handler.sasl_commands == [] and not conn.is_connected


# -- password ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_password_auth(start_server: ServerFactory, client_context: ssl.SSLContext, mechanism: str) -> None:
    server = start_server(Mailbox(password="app-pw"), mechanisms=[mechanism])
    config = server.config(authentication=Authentication.PASSWORD, password="app-pw")
    async with SmtpConnection(config, ssl_context=client_context) as conn:
        assert conn.mechanism == mechanism
        await conn.send_message(message())
    assert server.handler.sasl_commands == [mechanism]
    assert server.handler.messages[0].authenticated_as == "user@example.com"


async def test_wrong_password(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(Mailbox(password="right"), mechanisms=["PLAIN"])
    config = server.config(authentication=Authentication.PASSWORD, password="wrong-secret")
    conn = SmtpConnection(config, ssl_context=client_context)
    assert "wrong-secret" not in repr(conn)
    with pytest.raises(SmtpAuthenticationError) as caught:
        await conn.connect()
    assert caught.value.reply_code == 535
    assert "wrong-secret" not in str(caught.value)
    assert all("wrong-secret" not in step.detail for step in conn.steps)


# -- TLS -----------------------------------------------------------------------------------------------


async def test_starttls_required_but_not_offered_sends_no_credentials(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(tls="none")  # advertises AUTH in clear, no STARTTLS: a stripping middlebox
    config = server.config(security=Security.STARTTLS, authentication=Authentication.PASSWORD, password="pw")
    conn = SmtpConnection(config, ssl_context=client_context)
    with pytest.raises(SmtpPermanentError) as caught:
        await conn.connect()
    assert "STARTTLS" in caught.value.message
    assert "465" in caught.value.hint and "stripped" in caught.value.hint
    assert server.handler.sasl_commands == []
    assert [(s.name, s.ok) for s in conn.steps] == [("connect", True), ("ehlo", True), ("tls", False)]


@pytest.fixture
def other_ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
async def test_untrusted_certificate(
    start_server: ServerFactory, other_ca: trustme.CA, tmp_path: Path, tls: str
) -> None:
    server = start_server(tls=tls)
    wrong_ca = tmp_path / "other-ca.pem"
    other_ca.cert_pem.write_to_path(str(wrong_ca))
    conn = SmtpConnection(server.config(ca_file=str(wrong_ca)), FakeTokenSource())
    with pytest.raises(SmtpPermanentError) as caught:
        await conn.connect()
    assert not isinstance(caught.value, SmtpTransientError)
    assert "certificate" in caught.value.message
    assert "ca_file" in caught.value.hint and "SSL_CERT_FILE" in caught.value.hint
    assert conn.steps[-1].name == "tls" and not conn.steps[-1].ok
    assert server.handler.sasl_commands == []


async def test_default_store_does_not_trust_a_private_ca(start_server: ServerFactory) -> None:
    server = start_server()
    with pytest.raises(SmtpPermanentError) as caught:
        await SmtpConnection(server.config(), FakeTokenSource()).connect()
    assert "ca_file" in caught.value.hint


async def test_certificate_for_another_name(ca: trustme.CA, client_context: ssl.SSLContext) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("smtp.other.example").configure_cert(context)
    with (
        running_server(Mailbox(), tls="starttls", server_context=context) as server,
        pytest.raises(SmtpPermanentError) as caught,
    ):
        await SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context).connect()
    assert "not issued for the name '127.0.0.1'" in caught.value.hint


async def test_ca_file_is_trusted(start_server: ServerFactory, ca_file: str) -> None:
    server = start_server()
    async with SmtpConnection(server.config(ca_file=ca_file), FakeTokenSource()) as conn:
        await conn.send_message(message())
    assert len(server.handler.messages) == 1


async def test_missing_ca_file(start_server: ServerFactory, tmp_path: Path) -> None:
    server = start_server()
    conn = SmtpConnection(server.config(ca_file=str(tmp_path / "missing.pem")), FakeTokenSource())
    with pytest.raises(SmtpPermanentError, match="Cannot load ca_file"):
        await conn.connect()
    assert [(s.name, s.ok) for s in conn.steps] == [("tls", False)]


async def test_implicit_tls(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(tls="ssl")
    async with SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context) as conn:
        await conn.send_message(message())
        assert names(conn) == ["connect", "tls", "ehlo", "auth"]
        assert "TLSv1." in conn.steps[1].detail and "IP Address" not in conn.steps[1].detail
    assert len(server.handler.messages) == 1


def test_a_non_verifying_context_is_refused(start_server: ServerFactory) -> None:
    server = start_server()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="must verify"):
        SmtpConnection(server.config(), FakeTokenSource(), ssl_context=context)


async def test_a_username_with_spaces_is_a_configuration_error(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server()
    conn = SmtpConnection(server.config(username="user @example.com"), FakeTokenSource(), ssl_context=client_context)
    with pytest.raises(ConfigurationError, match="user name"):
        await conn.connect()
    assert conn.steps[-1].name == "auth" and not conn.steps[-1].ok
    assert server.handler.sasl_commands == []

"""The connection test of the Email server page: steps, details and hints, never an exception."""

from __future__ import annotations

import ssl

from mailgate.errors import ReauthorizationRequiredError, TokenEndpointError
from mailgate.smtp import build_message, diagnose
from mailgate.types import Authentication, EmailServerConfig, Security

from .conftest import ServerFactory
from .servers import FakeTokenSource, Mailbox


def summary(steps: list[diagnose.Step]) -> list[tuple[str, bool]]:
    return [(step.name, step.ok) for step in steps]


async def test_all_steps_pass(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server()
    steps = await diagnose.test_connection(server.config(), FakeTokenSource(), ssl_context=client_context)
    assert summary(steps) == [("connect", True), ("ehlo", True), ("tls", True), ("ehlo", True), ("auth", True)]
    connect, ehlo, tls, ehlo2, auth = steps
    assert "220 smtp.test" in connect.detail  # the banner
    assert "STARTTLS" in ehlo.detail
    assert "TLSv1." in tls.detail and "certificate subject" in tls.detail and "127.0.0.1" in tls.detail
    assert "AUTH" in ehlo2.detail and "XOAUTH2" in ehlo2.detail
    assert "XOAUTH2 as user@example.com" in auth.detail and "235" in auth.detail
    assert all(step.hint == "" for step in steps)
    assert server.handler.messages == []


async def test_send_step(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server()
    steps = await diagnose.test_connection(
        server.config(), FakeTokenSource(), send_to="admin@example.com", ssl_context=client_context
    )
    assert steps[-1].name == "send" and steps[-1].ok
    assert "admin@example.com" in steps[-1].detail and "queued as 1" in steps[-1].detail
    (received,) = server.handler.messages
    assert received.rcpt_tos == ("admin@example.com",) and b"mailgate test message" in received.content


async def test_send_step_with_a_given_message(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server()
    msg = build_message(sender="user@example.com", to=["x@example.com"], subject="custom", text="t")
    steps = await diagnose.test_connection(server.config(), FakeTokenSource(), message=msg, ssl_context=client_context)
    assert steps[-1].ok and server.handler.messages[0].rcpt_tos == ("x@example.com",)


async def test_refused_recipient_is_a_failed_send_step(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(Mailbox(refuse={"nobody@example.com": "550 5.1.1 No such user"}))
    steps = await diagnose.test_connection(
        server.config(), FakeTokenSource(), send_to="nobody@example.com", ssl_context=client_context
    )
    assert summary(steps)[-2:] == [("auth", True), ("send", False)]
    assert "550" in steps[-1].detail and steps[-1].hint


async def test_stops_at_the_failing_auth_step(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(Mailbox(failure="microsoft"))
    steps = await diagnose.test_connection(
        server.config(), FakeTokenSource(["bad", "worse"]), send_to="a@example.com", ssl_context=client_context
    )
    assert summary(steps)[-1] == ("auth", False)
    assert "5.7.3" in steps[-1].detail and "SMTP.Send" in steps[-1].hint
    assert "bad" not in steps[-1].detail
    assert server.handler.messages == []


async def test_missing_starttls_fails_the_tls_step(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(tls="none")
    steps = await diagnose.test_connection(
        server.config(security=Security.STARTTLS), FakeTokenSource(), ssl_context=client_context
    )
    assert summary(steps) == [("connect", True), ("ehlo", True), ("tls", False)]
    assert "465" in steps[-1].hint
    assert server.handler.sasl_commands == []


async def test_untrusted_certificate_fails_the_tls_step(start_server: ServerFactory) -> None:
    server = start_server(tls="ssl")
    steps = await diagnose.test_connection(server.config(), FakeTokenSource())  # default store: CA unknown
    assert summary(steps) == [("connect", True), ("tls", False)]
    assert "ca_file" in steps[-1].hint


async def test_nothing_listening_fails_the_connect_step(closed_port: int) -> None:
    config = EmailServerConfig("127.0.0.1", closed_port, Security.NONE, "", "a@example.com", Authentication.NONE)
    steps = await diagnose.test_connection(config, None)
    assert summary(steps) == [("connect", False)]
    assert "refused" in steps[0].detail and "Nothing listens" in steps[0].hint


async def test_plain_server_without_authentication(start_server: ServerFactory) -> None:
    server = start_server(tls="none")
    steps = await diagnose.test_connection(server.config(authentication=Authentication.NONE), None)
    assert summary(steps) == [("connect", True), ("ehlo", True), ("auth", True)]
    assert "before TLS" in steps[1].detail


async def test_token_endpoint_errors_become_a_failed_auth_step(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server()
    for error in (
        ReauthorizationRequiredError("Token has been expired or revoked.", hint="Authorize again on the OAuth page."),
        TokenEndpointError("invalid_client", hint="Paste the secret Value, not its ID.", error="invalid_client"),
    ):
        steps = await diagnose.test_connection(
            server.config(), FakeTokenSource(error=error), ssl_context=client_context
        )
        assert steps[-1] == diagnose.Step("auth", False, error.message, error.hint)
        assert all(step.ok for step in steps[:-1])


async def test_oauth_without_a_token_source(start_server: ServerFactory) -> None:
    server = start_server()
    steps = await diagnose.test_connection(server.config(), None)
    assert summary(steps) == [("auth", False)] and steps[0].hint

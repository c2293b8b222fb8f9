"""The "Test connection" of the Email server page (``POST /v2/email/server/test``) and of ``mailgate doctor``.

Runs connect, TLS, EHLO and AUTH (and optionally sends a message, checks the certificate's expiry or that the
server accepts the sender), and answers each step with what the server said and, on failure, its likely cause
and what to do.  Failures are answers here, not exceptions.
"""

from __future__ import annotations

import email.message
import ssl
from collections.abc import Generator
from datetime import datetime, timedelta

from ..errors import MailgateError
from ..types import EmailServerConfig
from .compose import build_message
from .tls import certificate_expiry
from .transport import SmtpConnection, Step, TokenSource

__all__ = ["CERTIFICATE_WARNING", "Step", "failure_detail", "test_connection"]

#: A server certificate expiring sooner than this fails the ``certificate`` step.
CERTIFICATE_WARNING = timedelta(days=14)

# Stands for a message in the sender check: never sent (DATA is never reached).
_PROBE = b"Subject: mailgate doctor\r\n\r\nNot sent: mailgate only checks that the sender is accepted.\r\n"


class _SenderAccepted(Exception):
    """Raised before DATA once MAIL FROM (and RCPT TO) were accepted: stops the transaction, nothing sent."""


def failure_detail(exc: MailgateError) -> str:
    """What went wrong (the server's or provider's words) followed by the likely cause, when known."""
    return f"{exc.message} Likely cause: {exc.cause}" if exc.cause else exc.message


def _failed(steps: list[Step], exc: MailgateError, default: str) -> list[Step]:
    # The connection records the failing step itself (without the cause); this adds the cause, and covers
    # failures it did not attribute.
    if steps and not steps[-1].ok:
        steps[-1] = Step(steps[-1].name, False, failure_detail(exc), exc.hint)
    else:
        steps.append(Step(default, False, failure_detail(exc), exc.hint))
    return steps


def _certificate_step(steps: list[Step], now: datetime) -> Step | None:
    tls = next((s for s in steps if s.name == "tls" and s.ok), None)
    expiry = certificate_expiry(tls.detail) if tls else None
    if expiry is None:
        return None
    left = expiry - now
    when = expiry.strftime("%Y-%m-%d %H:%M UTC")
    if left <= timedelta(0):
        return Step("certificate", False, f"The server's certificate expired on {when}.", _RENEW)
    if left < CERTIFICATE_WARNING:
        detail = f"Warning: the server's certificate expires in {left.days} day(s), on {when}."
        return Step("certificate", False, detail, _RENEW)
    return Step("certificate", True, f"verified; valid until {when} ({left.days} days left)")


_RENEW = (
    "The server's administrator must renew its certificate (for Gmail and Microsoft 365 the provider does; "
    "for a private server renew it, e.g. with certbot, before it expires: TLS will refuse it then)."
)


class _StopBeforeData:
    """The ``ready`` of the sender check: raises when awaited (before DATA), and is harmless when never awaited
    (a refused MAIL FROM), unlike a coroutine."""

    def __await__(self) -> Generator[None, None, object]:
        raise _SenderAccepted
        yield  # makes this a generator: it raises when awaited, not when made


async def _sender_step(connection: SmtpConnection, sender: str) -> Step:
    try:
        # MAIL FROM, RCPT TO the sender itself, then stop before DATA: the connection is dropped, and the
        # server discards the unfinished transaction (RFC 5321 s.3.8); nothing is sent.
        await connection.send(sender, [sender], _PROBE, ready=_StopBeforeData())
    except _SenderAccepted:
        return Step("sender", True, f"MAIL FROM:<{sender}> accepted (nothing was sent)")
    except MailgateError as exc:
        return Step("sender", False, failure_detail(exc), exc.hint)
    return Step("sender", False, "The check reached DATA: a bug in mailgate, please report it.")  # pragma: no cover


async def test_connection(
    config: EmailServerConfig,
    token_source: TokenSource | None,
    *,
    send_to: str | None = None,
    message: email.message.EmailMessage | None = None,
    ssl_context: ssl.SSLContext | None = None,
    check_sender: str | None = None,
    certificate_now: datetime | None = None,
) -> list[Step]:
    """Try the configuration step by step; stop at the first failing step and return the steps.

    With ``send_to`` and/or ``message`` it also sends a message (a short test message to ``send_to`` when
    ``message`` is not given) and adds a ``send`` step.  With ``certificate_now`` a ``certificate`` step says
    when the server's certificate expires (failing within :data:`CERTIFICATE_WARNING`); with ``check_sender``
    a ``sender`` step says whether the server accepts that sender (MAIL FROM), sending nothing.  SMTP, TLS,
    network and token endpoint failures (TokenEndpointError, ReauthorizationRequiredError) become a failed
    step with its likely cause and a hint; nothing is raised for them.
    """
    try:
        connection = SmtpConnection(config, token_source, ssl_context=ssl_context)
    except MailgateError as exc:  # e.g. OAuth without a token source, or no username
        return [Step("auth", False, failure_detail(exc), exc.hint)]
    try:
        await connection.connect()
    except MailgateError as exc:
        return _failed(list(connection.steps), exc, "auth")
    steps = list(connection.steps)
    try:
        if certificate_now is not None and (step := _certificate_step(steps, certificate_now)) is not None:
            steps.append(step)
        if check_sender is not None:
            steps.append(await _sender_step(connection, check_sender))
        if send_to is None and message is None:
            return steps
        if message is None:
            assert send_to is not None
            message = build_message(
                sender=config.sender or config.username,
                to=[send_to],
                subject="mailgate test message",
                text="This message was sent by mailgate to test the email server settings.",
            )
        result = await connection.send_message(message, recipients=[send_to] if send_to else None)
        detail = f"accepted: {', '.join(result.accepted)}; server: {result.reply}"
        if result.refused:
            refused = "; ".join(f"{rcpt}: {code} {text}" for rcpt, (code, text) in result.refused.items())
            detail += f"; refused: {refused}"
        steps.append(Step("send", True, detail))
    except MailgateError as exc:
        steps.append(Step("send", False, failure_detail(exc), exc.hint))
    finally:
        await connection.close()
    return steps


# The name starts with "test": keep pytest from collecting it when a test module imports it.
test_connection.__test__ = False  # type: ignore[attr-defined]

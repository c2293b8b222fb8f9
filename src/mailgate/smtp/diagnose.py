"""The "Test connection" of the Email server page (``POST /v2/email/server/test``).

Runs connect, TLS, EHLO and AUTH (and optionally sends a message), and answers each step with what the
server said and, on failure, what to do.  Failures are answers here, not exceptions.
"""

from __future__ import annotations

import email.message
import ssl

from ..errors import MailgateError
from ..types import EmailServerConfig
from .compose import build_message
from .transport import SmtpConnection, Step, TokenSource

__all__ = ["Step", "test_connection"]


def _failed(steps: list[Step], exc: MailgateError, default: str) -> list[Step]:
    # The connection records the failing step itself; this covers failures it did not attribute.
    if not steps or steps[-1].ok:
        steps.append(Step(default, False, exc.message, exc.hint))
    return steps


async def test_connection(
    config: EmailServerConfig,
    token_source: TokenSource | None,
    *,
    send_to: str | None = None,
    message: email.message.EmailMessage | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> list[Step]:
    """Try the configuration step by step; stop at the first failing step and return the steps.

    With ``send_to`` and/or ``message`` it also sends a message (a short test message to ``send_to`` when
    ``message`` is not given) and adds a ``send`` step.  SMTP, TLS, network and token endpoint failures
    (TokenEndpointError, ReauthorizationRequiredError) become a failed step with a hint; nothing is raised
    for them.
    """
    try:
        connection = SmtpConnection(config, token_source, ssl_context=ssl_context)
    except MailgateError as exc:  # e.g. OAuth without a token source, or no username
        return [Step("auth", False, exc.message, exc.hint)]
    try:
        await connection.connect()
    except MailgateError as exc:
        return _failed(list(connection.steps), exc, "auth")
    steps = list(connection.steps)
    try:
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
        steps.append(Step("send", False, exc.message, exc.hint))
    finally:
        await connection.close()
    return steps


# The name starts with "test": keep pytest from collecting it when a test module imports it.
test_connection.__test__ = False  # type: ignore[attr-defined]

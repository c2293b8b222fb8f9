"""One mail transaction (RFC 5321 s3.3: MAIL, RCPT..., DATA) on an open, authenticated aiosmtplib client."""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import functools
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message, parse_address

from ..errors import SmtpError, SmtpPermanentError, ValidationError
from .replies import CLIENT_ERRORS, error_from_exception, error_from_reply, one_line

__all__ = ["SendResult", "StaleConnection", "envelope", "run_transaction"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SendResult:
    """What the server said about one message: accepted and refused recipients, and its final reply."""

    accepted: tuple[str, ...]
    #: Refused recipients with the server's (code, text); only when some others were accepted.
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: The server's reply to the message (DATA), often with its queue id.
    reply: str = ""


class _NotOurs(Exception):
    """Carries the exception of ``before_data`` past the SMTP error mapping, which it must not go through."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


class StaleConnection(Exception):
    """A reused connection turned out to be closed before the message's first command went out."""


def envelope(
    message: email.message.EmailMessage | bytes, sender: str | None, recipients: Sequence[str] | None
) -> tuple[str, list[str]]:
    """The envelope sender and recipients: the arguments, else From and To/Cc/Bcc of the message."""
    env_sender, env_rcpts = sender, list(recipients) if recipients is not None else None
    if env_sender is None or env_rcpts is None:
        parsed = parse_serialised(message) if isinstance(message, bytes) else message
        env_sender = env_sender if env_sender is not None else extract_sender(parsed)
        env_rcpts = env_rcpts if env_rcpts is not None else extract_recipients(parsed)
    errors: dict[str, str] = {}
    for name, values in (("sender", [env_sender or ""]), ("recipients", env_rcpts)):
        if not all(map(_usable_address, values)):
            errors[name] = "contains characters not allowed in an SMTP address"
    if not env_sender:
        errors["sender"] = "no sender: pass sender= or set From"
    if not env_rcpts:
        errors["recipients"] = "no recipients: pass recipients= or set To/Cc/Bcc"
    if errors or env_sender is None:
        raise ValidationError(errors)
    return env_sender, env_rcpts


@functools.lru_cache(maxsize=4096)
def _usable_address(value: str) -> bool:
    """Whether ``value`` can go on a MAIL/RCPT command line (nothing that could inject another command).

    Cached: an outbox sends to the same addresses over and over, and parsing one costs more than its command.
    """
    if _CONTROL.search(value):
        return False
    try:
        parse_address(value)
    except ValueError:
        return False
    return True


async def run_transaction(
    smtp: aiosmtplib.SMTP,
    message: email.message.EmailMessage | bytes,
    sender: str,
    rcpts: list[str],
    *,
    host: str,
    port: int,
    may_be_stale: bool,
    before_data: Awaitable[object] | None = None,
) -> SendResult:
    """Send ``message``; raise the mapped SmtpError when the sender, the message or all recipients are refused.

    ``message`` as bytes (an already serialised RFC 5322 message, CRLF line ends) goes out as it is when the
    server can take it (7-bit, or 8-bit and the server offers 8BITMIME); otherwise it is parsed and
    re-encoded for 7-bit transport.

    With ``may_be_stale``, a disconnect detected at MAIL FROM raises StaleConnection instead (the caller
    reconnects: nothing of this message reached the server).  ``before_data`` is awaited after the
    recipients are accepted and before DATA (the outbox commits the previous message's result meanwhile);
    if it raises, the transaction is reset and its exception propagates: the message was not sent.
    """
    utf8 = not (sender + "".join(rcpts)).isascii()
    if utf8 and not smtp.supports_extension("smtputf8"):
        raise SmtpPermanentError(
            "An address is not ASCII and the server does not offer SMTPUTF8 (RFC 6531).",
            hint="Use ASCII addresses (punycode domains) with this server.",
        )
    options = ["SMTPUTF8"] if utf8 else []
    eight_bit = smtp.supports_extension("8bitmime")
    if eight_bit:
        options.append("BODY=8BITMIME")  # RFC 6152
    data = _wire_bytes(message, utf8=utf8, eight_bit=eight_bit)
    if smtp.supports_extension("size"):
        options.insert(0, f"SIZE={len(data)}")  # RFC 1870: lets the server refuse a too large message early
    encoding = "utf-8" if utf8 else "ascii"
    stage = "mail"
    try:
        try:
            await smtp.mail(sender, options=options, encoding=encoding)
        except aiosmtplib.SMTPServerDisconnected as exc:
            if may_be_stale:
                raise StaleConnection from exc
            raise
        stage = "rcpt"
        accepted: list[str] = []
        refused: dict[str, tuple[int, str]] = {}
        for rcpt in rcpts:
            try:
                await smtp.rcpt(rcpt, encoding=encoding)
                accepted.append(rcpt)
            except aiosmtplib.SMTPRecipientRefused as exc:
                if exc.code == 421:  # the server is closing the connection: not about this recipient
                    raise
                refused[rcpt] = (exc.code, exc.message)
        if not accepted:
            raise _all_refused(refused)
        if before_data is not None:
            try:
                await before_data
            except Exception as exc:
                await _rset_quietly(smtp)
                raise _NotOurs(exc) from exc  # not to be taken for an SMTP or network error below
            except BaseException:
                await _rset_quietly(smtp)
                raise
        stage = "data"
        reply = await smtp.data(data)
    except _NotOurs as wrapper:
        raise wrapper.error from None
    except aiosmtplib.SMTPResponseException as exc:
        await _rset_quietly(smtp)
        raise error_from_exception(exc, stage, host=host, port=port) from exc
    except SmtpError:
        await _rset_quietly(smtp)
        raise
    except CLIENT_ERRORS as exc:
        raise error_from_exception(exc, stage, host=host, port=port) from exc
    return SendResult(tuple(accepted), refused, one_line(reply.message))


def _wire_bytes(message: email.message.EmailMessage | bytes, *, utf8: bool, eight_bit: bool) -> bytes:
    if isinstance(message, bytes):
        if eight_bit or message.isascii():
            return message
        message = parse_serialised(message)
    try:
        return flatten_message(message, utf8=utf8, cte_type="8bit" if eight_bit else "7bit")
    except UnicodeError as exc:  # 8-bit content in a part without a charset: nothing to re-encode it from
        raise SmtpPermanentError(
            "The message has 8-bit content that cannot be re-encoded for this server, which does not offer "
            "8BITMIME (RFC 6152).",
            hint="Give every text part a charset (or send binary parts in base64), or use a server that offers "
            "8BITMIME (Gmail and Microsoft 365 do).",
        ) from exc


def parse_serialised(raw: bytes) -> email.message.EmailMessage:
    """An EmailMessage of bytes that were checked and serialised before (e.g. stored by the outbox).

    The compat32 parser keeps header values as the strings they are (several times faster than building
    header objects), and flattening writes them back out unchanged.
    """
    message = email.message_from_bytes(raw, _class=email.message.EmailMessage, policy=email.policy.compat32)
    assert isinstance(message, email.message.EmailMessage)
    return message


async def _rset_quietly(smtp: aiosmtplib.SMTP) -> None:
    # Leave the connection ready for the next message (RFC 5321 s4.1.1.5); failures here do not matter.
    if smtp.is_connected:
        with contextlib.suppress(*CLIENT_ERRORS):
            await smtp.rset()


def _all_refused(refused: dict[str, tuple[int, str]]) -> SmtpError:
    # If any refusal is temporary, the whole message is worth retrying later.
    code, text = next((r for r in refused.values() if 400 <= r[0] < 500), next(iter(refused.values())))
    err = error_from_reply(code, text, during="rcpt")
    message = f"{err.message} (all {len(refused)} recipient(s) refused: {', '.join(refused)})"
    return type(err)(message, hint=err.hint, reply_code=err.reply_code, reply=err.reply)

"""One mail transaction (RFC 5321 s3.3: MAIL, RCPT..., DATA) through aiosmtplib's public commands.

One command at a time, each reply checked before the next command: no RCPT after a refused MAIL, no DATA
once every RCPT was refused (RSET instead, and the connection carries on).
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import functools
import re
from collections.abc import Awaitable, Sequence

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message, parse_address

from ..errors import SmtpError, SmtpPermanentError, ValidationError
from ..transport import SendResult
from .compose import simple_addr_spec
from .replies import CLIENT_ERRORS, error_from_exception, error_from_reply, one_line

__all__ = ["Broken", "envelope", "flatten", "parse_serialised", "run_transaction"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Broken(Exception):
    """The connection failed mid-transaction: its state is unknown, it must be closed.

    ``error`` is the mapped error to raise; ``before_any_reply``: nothing of the message reached the server
    (the first command already found the connection closed), so sending it again on a new one is safe.
    """

    def __init__(self, error: SmtpError, *, before_any_reply: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.before_any_reply = before_any_reply


def envelope(
    message: email.message.EmailMessage | bytes, sender: str | None, recipients: Sequence[str] | None
) -> tuple[str, list[str]]:
    """The envelope sender and recipients: the arguments, else From and To/Cc/Bcc of the message.

    Raises ValidationError for a missing sender or recipient, or one that cannot go on a command line.
    """
    env_sender, env_rcpts = sender, list(recipients) if recipients is not None else None
    if env_sender is None or env_rcpts is None:
        parsed = parse_serialised(message) if isinstance(message, bytes) else message
        env_sender = env_sender if env_sender is not None else extract_sender(parsed)
        env_rcpts = env_rcpts if env_rcpts is not None else extract_recipients(parsed)
    errors: dict[str, str] = {}
    for name, values in (("sender", [env_sender or ""]), ("recipients", env_rcpts)):
        if any(_command_path(value) is None for value in values):
            errors[name] = "contains characters not allowed in an SMTP address"
    if not env_sender:
        errors["sender"] = "no sender: pass sender= or set From"
    if not env_rcpts:
        errors["recipients"] = "no recipients: pass recipients= or set To/Cc/Bcc"
    if errors or env_sender is None:
        raise ValidationError(errors)
    return env_sender, env_rcpts


@functools.lru_cache(maxsize=4096)
def _command_path(value: str) -> str | None:
    """The address as it goes between the angle brackets of MAIL FROM / RCPT TO; None when ``value`` cannot go
    on a command line (nothing that could inject another command).  Cached: an outbox sends to the same
    addresses over and over."""
    if simple_addr_spec(value):
        return value
    if _CONTROL.search(value):
        return None
    try:
        return parse_address(value)
    except ValueError:
        return None


def flatten(message: email.message.EmailMessage, *, utf8: bool) -> bytes:
    """``message`` as it goes out (Bcc removed, 8-bit content kept: :func:`run_transaction` re-encodes it for a
    server without 8BITMIME)."""
    return flatten_message(message, utf8=utf8, cte_type="8bit")


async def run_transaction(
    smtp: aiosmtplib.SMTP,
    sender: str,
    rcpts: Sequence[str],
    message: bytes,
    *,
    host: str,
    port: int,
    ready: Awaitable[object] | None = None,
) -> SendResult:
    """Send ``message`` (an RFC 5322 message serialised before, CRLF line ends) from ``sender`` to ``rcpts``.

    The bytes go out as they are when the server can take them (7-bit, or 8-bit and the server offers
    8BITMIME); otherwise they are parsed and re-encoded for 7-bit transport.  A refusal (of the sender, of
    every recipient, of the message) raises the mapped SmtpError after RSET: the connection carries on.
    Anything else (a dropped connection, a timeout, a reply that is not SMTP) raises :class:`Broken`.
    ``ready`` is awaited once the recipients are accepted, before DATA; its exceptions propagate as they are.
    """
    options, encoding, data = _prepare(smtp, sender, rcpts, message)
    stage = "mail"
    accepted: list[str] = []
    refused: dict[str, tuple[int, str]] = {}
    try:
        await smtp.mail(sender, options=options, encoding=encoding)
        stage = "rcpt"
        for rcpt in rcpts:
            try:
                await smtp.rcpt(rcpt, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                if exc.code == 421 or not _is_reply(exc.code):  # closing, or not a reply: not about rcpt
                    raise
                refused[rcpt] = (exc.code, exc.message)
            else:
                accepted.append(rcpt)
    except CLIENT_ERRORS as exc:
        raise await _failure(smtp, exc, stage, host=host, port=port) from exc
    if not accepted:
        await _reset(smtp)
        raise _all_refused(refused)
    if ready is not None:
        await ready  # outside the mapping: its errors (the database's, even an OSError) are not SMTP errors
    try:
        reply = await smtp.data(data)
    except CLIENT_ERRORS as exc:
        raise await _failure(smtp, exc, "data", host=host, port=port) from exc
    return SendResult(tuple(accepted), refused, one_line(reply.message))


async def _failure(smtp: aiosmtplib.SMTP, exc: BaseException, stage: str, *, host: str, port: int) -> Exception:
    """What to raise for ``exc`` at ``stage``: the mapped SmtpError of a refusal (after RSET), else Broken."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code == 421:  # the server is closing the connection (aiosmtplib closes its side)
            return Broken(error_from_reply(exc.code, exc.message, during=stage), before_any_reply=stage == "mail")
        if not _is_reply(exc.code):
            # Not an SMTP reply (RFC 5321 s4.2): the replies still to come could not be told apart.
            text = exc.message if exc.code < 0 else f"Malformed SMTP reply: {exc.code} {exc.message}".rstrip()
            error = error_from_exception(aiosmtplib.SMTPResponseException(-1, text), stage, host=host, port=port)
            return Broken(error, before_any_reply=False)
        await _reset(smtp)
        return error_from_reply(exc.code, exc.message, during=stage)
    stale = stage == "mail" and isinstance(exc, aiosmtplib.SMTPServerDisconnected)
    return Broken(error_from_exception(exc, stage, host=host, port=port), before_any_reply=stale)


def _is_reply(code: int) -> bool:
    return 200 <= code <= 599


def _prepare(smtp: aiosmtplib.SMTP, sender: str, rcpts: Sequence[str], message: bytes) -> tuple[list[str], str, bytes]:
    """The MAIL parameters, the encoding of the addresses and the message as it goes out."""
    utf8 = not (sender + "".join(rcpts)).isascii()
    if utf8 and not smtp.supports_extension("smtputf8"):
        raise SmtpPermanentError(
            "An address is not ASCII and the server does not offer SMTPUTF8 (RFC 6531).",
            hint="Use ASCII addresses (punycode domains) with this server.",
        )
    eight_bit = smtp.supports_extension("8bitmime")
    data = _wire_bytes(message, utf8=utf8, eight_bit=eight_bit)
    options = []
    if smtp.supports_extension("size"):
        options.append(f"SIZE={len(data)}")  # RFC 1870: lets the server refuse a too large message early
    if utf8:
        options.append("SMTPUTF8")
    if eight_bit:
        options.append("BODY=8BITMIME")  # RFC 6152
    return options, "utf-8" if utf8 else "ascii", data


def _wire_bytes(message: bytes, *, utf8: bool, eight_bit: bool) -> bytes:
    if eight_bit or message.isascii():
        return message
    try:
        return flatten_message(parse_serialised(message), utf8=utf8, cte_type="7bit")
    except UnicodeError as exc:  # 8-bit content in a part without a charset: nothing to re-encode it from
        raise SmtpPermanentError(
            "The message has 8-bit content that cannot be re-encoded for this server, which does not offer "
            "8BITMIME (RFC 6152).",
            hint="Give every text part a charset (or send binary parts in base64), or use a server that offers "
            "8BITMIME (Gmail and Microsoft 365 do).",
        ) from exc


def parse_serialised(raw: bytes) -> email.message.EmailMessage:
    """An EmailMessage of bytes that were checked and serialised before (e.g. stored by the outbox).

    The compat32 parser keeps header values as the strings they are, and flattening writes them back out
    unchanged.
    """
    message = email.message_from_bytes(raw, _class=email.message.EmailMessage, policy=email.policy.compat32)
    assert isinstance(message, email.message.EmailMessage)
    return message


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    """Leave the connection ready for the next message (RSET, RFC 5321 s4.1.1.5); failures do not matter."""
    if smtp.is_connected:
        with contextlib.suppress(*CLIENT_ERRORS):
            await smtp.rset()


def _all_refused(refused: dict[str, tuple[int, str]]) -> SmtpError:
    # If any refusal is temporary, the whole message is worth retrying later.
    code, text = next((r for r in refused.values() if 400 <= r[0] < 500), next(iter(refused.values())))
    err = error_from_reply(code, text, during="rcpt")
    message = f"{err.message} (all {len(refused)} recipient(s) refused: {', '.join(refused)})"
    return type(err)(message, cause=err.cause, hint=err.hint, reply_code=err.reply_code, reply=err.reply)

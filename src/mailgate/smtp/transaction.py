"""One mail transaction (RFC 5321 s3.3: MAIL, RCPT..., DATA) on an open, authenticated aiosmtplib client."""

from __future__ import annotations

import asyncio
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
from .channel import CommandChannel, Reply
from .compose import simple_addr_spec
from .replies import CLIENT_ERRORS, error_from_exception, error_from_reply, one_line

__all__ = ["Prepared", "SendResult", "StaleConnection", "envelope", "envelope_commands", "run_transaction"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SendResult:
    """What the server said about one message: accepted and refused recipients, and its final reply."""

    accepted: tuple[str, ...]
    #: Refused recipients with the server's (code, text); only when some others were accepted.
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: The server's reply to the message (DATA), often with its queue id.
    reply: str = ""


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
    on a command line (nothing that could inject another command).

    Cached: an outbox sends to the same addresses over and over, and parsing one costs more than its command.
    """
    if simple_addr_spec(value):
        return value
    if _CONTROL.search(value):
        return None
    try:
        return parse_address(value)
    except ValueError:
        return None


#: A message's envelope commands and its data as they go out (see envelope_commands).
Prepared = tuple[list[bytes], bytes]


def envelope_commands(
    channel: CommandChannel, message: email.message.EmailMessage | bytes, sender: str, rcpts: list[str]
) -> Prepared:
    """MAIL, the RCPTs and DATA for this message on this channel, and the message as it goes out after DATA
    (line ends and leading dots done, without the final "." line).  Raises SmtpPermanentError for what the
    server cannot take (a non-ASCII address without SMTPUTF8, 8-bit content it cannot be re-encoded from)."""
    utf8 = not (sender + "".join(rcpts)).isascii()
    if utf8 and not channel.smtputf8:
        raise SmtpPermanentError(
            "An address is not ASCII and the server does not offer SMTPUTF8 (RFC 6531).",
            hint="Use ASCII addresses (punycode domains) with this server.",
        )
    options = " SMTPUTF8" if utf8 else ""
    if channel.eight_bit:
        options += " BODY=8BITMIME"  # RFC 6152
    data = _wire_bytes(message, utf8=utf8, eight_bit=channel.eight_bit)
    if channel.size:
        options = f" SIZE={len(data)}{options}"  # RFC 1870: lets the server refuse a too large message early
    encoding = "utf-8" if utf8 else "ascii"
    commands = [f"MAIL FROM:<{_path(sender)}>{options}\r\n".encode(encoding)]
    commands += [f"RCPT TO:<{_path(rcpt)}>\r\n".encode(encoding) for rcpt in rcpts]
    commands.append(b"DATA\r\n")
    return commands, _dot_stuffed(data)


async def run_transaction(
    channel: CommandChannel,
    message: email.message.EmailMessage | bytes,
    sender: str,
    rcpts: list[str],
    *,
    host: str,
    port: int,
    may_be_stale: bool,
    before_data: Awaitable[object] | None = None,
    written: bool = False,
    then: list[bytes] | None = None,
    prepared: Prepared | None = None,
) -> SendResult:
    """Send ``message``; raise the mapped SmtpError when the sender, the message or all recipients are refused.

    MAIL, the RCPTs and DATA go out in one write when the server offers PIPELINING (RFC 2920), one at a
    time otherwise; every reply is checked either way, and the message itself follows only once the
    sender, at least one recipient and DATA are accepted.

    ``message`` as bytes (an already serialised RFC 5322 message, CRLF line ends) goes out as it is when the
    server can take it (7-bit, or 8-bit and the server offers 8BITMIME); otherwise it is parsed and
    re-encoded for 7-bit transport.

    With ``may_be_stale``, a connection found closed before any reply raises StaleConnection instead (the
    caller reconnects: nothing of this message was accepted).  ``before_data`` is awaited once the
    recipients and DATA are accepted, while the message goes out and before its final "." line (the
    outbox commits the previous message's result meanwhile; a future found done after one step of the loop
    lets the message and its "." go in one write); if it raises, the connection is closed, which abandons
    the unfinished message, and its exception propagates: the message was not sent.

    ``then``: the next message's envelope commands (:func:`envelope_commands`), written with this message's
    final "." when the server pipelines (one round trip per message instead of two); the next transaction
    is then called with ``written`` and reads their replies.  Its connection found closed before any of
    them is a StaleConnection too: nothing of that message can have been accepted without its content.
    ``prepared``: this message's :func:`envelope_commands`, computed when they were written ahead.
    """
    commands, message_data = prepared or envelope_commands(channel, message, sender, rcpts)
    replies: list[Reply] = []
    try:
        await channel.exchange(commands, replies, written=written)
    except CLIENT_ERRORS as exc:
        if not replies and (may_be_stale or written) and isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            raise StaleConnection from exc
        # A refusal that came before the failure says more (a 421 is followed by the server closing).
        _check_envelope(replies, rcpts, complete=False)
        stage = "mail" if not replies else "rcpt" if len(replies) <= len(rcpts) else "data"
        raise error_from_exception(exc, stage, host=host, port=port) from exc
    try:
        accepted, refused = _check_envelope(replies, rcpts, complete=True)
    except SmtpError:
        await _reset(channel, replies[-1])
        raise
    if isinstance(before_data, asyncio.Future) and not before_data.done():
        await asyncio.sleep(0)  # one step of the loop: the outbox's commit is usually done in it
    if isinstance(before_data, asyncio.Future) and before_data.done():
        # Done already: the message and its final "." go out in one write (the server wakes up once).
        try:
            before_data.result()
        except BaseException:
            channel.abort()  # the server waits for the message: closing abandons it (RFC 5321 s3.8)
            raise
    elif before_data is not None:
        # The message goes out while before_data finishes; it is complete (and can be delivered) only with
        # the final "." line, which waits for before_data.
        try:
            channel.write(message_data)
        except CLIENT_ERRORS as exc:
            raise error_from_exception(exc, "data", host=host, port=port) from exc
        message_data = b""
        try:
            await before_data  # its errors are not SMTP errors: they must not go through the mapping below
        except BaseException:
            channel.abort()  # without the final ".", closing abandons the message (RFC 5321 s3.8)
            raise
    try:
        if then and channel.pipelining:
            reply = await channel.finish(message_data + _END_OF_DATA, then)
        else:
            reply = await channel.command(message_data + _END_OF_DATA)
    except CLIENT_ERRORS as exc:
        raise error_from_exception(exc, "data", host=host, port=port) from exc
    if reply.code != 250:
        if not channel.ahead:  # the transaction is over either way; RSET would also undo the next one's
            await _reset(channel, None)
        raise error_from_reply(reply.code, reply.text, during="data")
    return SendResult(tuple(accepted), refused, one_line(reply.text))


_END_OF_DATA = b".\r\n"
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def _check_envelope(
    replies: list[Reply], rcpts: list[str], *, complete: bool
) -> tuple[list[str], dict[str, tuple[int, str]]]:
    """The recipients accepted and refused; raises the error for a refused sender, all recipients or DATA.

    With ``complete=False`` (the replies stopped early), only a refusal among those received is raised.
    """
    if replies and replies[0].code != 250:
        raise error_from_reply(replies[0].code, replies[0].text, during="mail")
    accepted: list[str] = []
    refused: dict[str, tuple[int, str]] = {}
    for rcpt, reply in zip(rcpts, replies[1 : len(rcpts) + 1]):  # noqa: B905 - replies may stop early
        if reply.code in (250, 251):  # 251: "user not local; will forward" (RFC 5321 s4.2.2)
            accepted.append(rcpt)
        elif reply.code == 421:  # the server is closing the connection: not about this recipient
            raise error_from_reply(reply.code, reply.text, during="rcpt")
        else:
            refused[rcpt] = (reply.code, reply.text)
    if not complete:
        return accepted, refused
    if not accepted:
        raise _all_refused(refused)
    data = replies[-1]
    if data.code != 354:
        raise error_from_reply(data.code, data.text, during="data")
    return accepted, refused


def _path(address: str) -> str:
    path = _command_path(address)
    assert path is not None  # checked by envelope()
    return path


def _dot_stuffed(data: bytes) -> bytes:
    """The message as DATA sends it, but for the final "." line: CRLF line ends, leading dots doubled (s4.5.2)."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:  # a bare CR or LF
        data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data


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


async def _reset(channel: CommandChannel, data_reply: Reply | None) -> None:
    """Leave the connection ready for the next message (RSET, RFC 5321 s4.1.1.5); failures do not matter.

    A server that answered DATA with 354 although the transaction failed waits for a message: only closing
    the connection abandons it safely.
    """
    if data_reply is not None and data_reply.code == 354:
        channel.abort()
    elif channel.is_open:
        with contextlib.suppress(*CLIENT_ERRORS):
            await channel.command(b"RSET\r\n")


def _all_refused(refused: dict[str, tuple[int, str]]) -> SmtpError:
    # If any refusal is temporary, the whole message is worth retrying later.
    code, text = next((r for r in refused.values() if 400 <= r[0] < 500), next(iter(refused.values())))
    err = error_from_reply(code, text, during="rcpt")
    message = f"{err.message} (all {len(refused)} recipient(s) refused: {', '.join(refused)})"
    return type(err)(message, hint=err.hint, reply_code=err.reply_code, reply=err.reply)

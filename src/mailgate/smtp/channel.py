"""The command channel of an authenticated connection: commands written in groups, replies read in order.

aiosmtplib sets the connection up (TLS, EHLO, AUTH) and then hands its transport over to a
:class:`CommandChannel`, which carries the mail transactions.  aiosmtplib's protocol reads one reply per
command it writes and drops anything else, so it cannot pipeline; this protocol queues every reply that
arrives, which lets a transaction send MAIL, all its RCPTs and DATA in one write when the server offers
PIPELINING (RFC 2920; Gmail and Microsoft 365 do), and one command at a time otherwise.

Errors are aiosmtplib's exception classes (SMTPServerDisconnected, SMTPReadTimeoutError,
SMTPResponseException), so :mod:`.replies` maps them like any other.
"""

from __future__ import annotations

import asyncio
import collections
from typing import NamedTuple, cast

import aiosmtplib

__all__ = ["CommandChannel", "Reply"]

# A reply (with its continuation lines) longer than this is not an SMTP reply (RFC 5321 s4.5.3.1.5 allows
# 512 per line); the same bound as aiosmtplib's, which keeps a misbehaving server from filling memory.
_MAX_REPLY = 32 * 1024


class Reply(NamedTuple):
    """One server reply: its code and its text (continuation lines joined with newlines)."""

    code: int
    text: str


class CommandChannel(asyncio.Protocol):
    """Writes commands and reads the server's replies in order, on a transport taken over from aiosmtplib.

    ``timeout`` bounds the wait for each reply; on a timeout the connection is aborted (after one, the
    replies that are still to come could no longer be told apart).
    """

    def __init__(self, smtp: aiosmtplib.SMTP, *, timeout: float) -> None:
        transport = smtp.transport
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("not connected")
        # A stream transport; uvloop's do not subclass asyncio.Transport, hence no isinstance check.
        self._transport = cast(asyncio.Transport, transport)
        self._previous = transport.get_protocol()
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._buffer = bytearray()
        self._replies: collections.deque[Reply] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: aiosmtplib.SMTPException | None = None
        #: Commands written ahead (after a message's final "."), whose replies the next exchange reads.
        self.ahead = 0
        #: What the server offered in its last EHLO that a transaction needs to know.
        self.pipelining = smtp.supports_extension("pipelining")
        self.eight_bit = smtp.supports_extension("8bitmime")
        self.smtputf8 = smtp.supports_extension("smtputf8")
        self.size = smtp.supports_extension("size")
        transport.set_protocol(self)

    def __repr__(self) -> str:
        return f"<CommandChannel pipelining={self.pipelining} {'open' if self.is_open else 'closed'}>"

    @property
    def is_open(self) -> bool:
        return self._error is None and not self._transport.is_closing()

    # -- protocol callbacks ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        buffer = self._buffer
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            if buffer[start + 3 : start + 4] != b"-":  # the last line of a reply ("250 OK", or just "250")
                reply = _parse(bytes(buffer[: end + 1]))
                if reply is None:
                    text = bytes(buffer[: min(end, 200)]).decode("utf-8", "replace")
                    self.abort(aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP reply: {text}"))
                    return
                self._replies.append(reply)
                del buffer[: end + 1]
                start = 0
            else:
                start = end + 1
        if len(buffer) > _MAX_REPLY:
            self.abort(aiosmtplib.SMTPResponseException(-1, "Response too long"))
            return
        if self._replies:
            self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        error = aiosmtplib.SMTPServerDisconnected("Connection lost")
        error.__cause__ = exc
        self._fail(error)
        # aiosmtplib's protocol keeps the connection's state (its SMTP object's is_connected): let it know.
        self._previous.connection_lost(exc)

    # -- commands ----------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.is_open:
            raise self._error or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport.write(data)

    async def exchange(self, commands: list[bytes], replies: list[Reply], *, written: bool = False) -> None:
        """Send ``commands`` (each ending in CRLF) and append the server's replies to ``replies``.

        Pipelined (one write) when the server offers PIPELINING, else one command per reply, stopping where the
        rest could not succeed (``replies`` then holds fewer replies than commands).  ``written``:
        the commands went out already, written ahead by :meth:`finish`; only their replies are read.
        Raises aiosmtplib's SMTPServerDisconnected or SMTPReadTimeoutError; ``replies`` then holds those received.
        """
        if written:
            if self.ahead != len(commands):
                self.abort()
                raise aiosmtplib.SMTPServerDisconnected("The commands written ahead were not these")
            self.ahead = 0
            for _ in commands:
                replies.append(await self.reply())
            return
        if self._replies or self.ahead:
            # A reply nobody asked for: a server about to close an idle connection says 421 first (or
            # commands written ahead were abandoned).  Nothing of this transaction was sent: the caller may
            # start over on a new connection.
            self.abort()
            raise aiosmtplib.SMTPServerDisconnected("The server closed the connection (unsolicited reply)")
        if self.pipelining:
            self.write(b"".join(commands))
            for _ in commands:
                replies.append(await self.reply())
        else:
            # One at a time, each sent only if it can still matter (RFC 5321 s3.3): nothing after a refused
            # MAIL, no DATA when every RCPT was refused (the caller's RSET ends the transaction).
            rcpts = accepted = 0
            for command in commands:
                verb = command[:4].upper()
                if verb == b"DATA" and rcpts and not accepted:
                    return
                self.write(command)
                reply = await self.reply()
                replies.append(reply)
                if verb == b"MAIL" and reply.code != 250:
                    return
                if verb == b"RCPT":
                    rcpts += 1
                    accepted += reply.code in (250, 251)

    async def finish(self, end: bytes, ahead: list[bytes]) -> Reply:
        """Send the end of a message (its last data and the final "." line) and, in the same write, the next
        message's commands (RFC 2920 s3.1: message content may be followed by further commands in a group);
        return the reply to the end.  The next :meth:`exchange` with ``written=True`` reads the others."""
        self.write(end + b"".join(ahead))
        self.ahead = len(ahead)
        return await self.reply()

    async def command(self, command: bytes) -> Reply:
        """Send one command and return its reply."""
        self.write(command)
        return await self.reply()

    async def reply(self) -> Reply:
        """The next reply (in the order the commands were written)."""
        if not self._replies:
            if self._error is not None:
                raise self._error
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_later(self._timeout, self._time_out, waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # The replies still to come would be taken for the next command's: the channel is unusable.
                self.abort()
                raise
            finally:
                timer.cancel()
                self._waiter = None
            if not self._replies:
                assert self._error is not None
                raise self._error
        return self._replies.popleft()

    def abort(self, error: aiosmtplib.SMTPException | None = None) -> None:
        """Close at once, without QUIT (the server discards an unfinished transaction, RFC 5321 s3.8).

        ``error`` (default: closed) is what waiting and later commands raise.
        """
        self._fail(error or aiosmtplib.SMTPServerDisconnected("Connection closed"))
        self._transport.abort()

    # -- internals ---------------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: aiosmtplib.SMTPException) -> None:
        if self._error is None:
            self._error = error
        self._wake()  # replies already received are still handed out first

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if waiter is self._waiter and not waiter.done():
            self.abort(aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"))


def _parse(raw: bytes) -> Reply | None:
    """A complete reply, lines ``ddd-text`` ... ``ddd text`` (RFC 5321 s4.2); None if it is not one."""
    lines = raw.split(b"\n")[:-1]  # raw ends with a line feed
    code = raw[:3]
    if not code.isdigit() or any(line[:3] != code for line in lines):
        return None
    text = "\n".join(line[4:].strip(b" \t\r").decode("utf-8", "surrogateescape") for line in lines)
    return Reply(int(code), text)

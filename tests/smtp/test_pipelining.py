"""Mail transactions on the command channel: pipelined (RFC 2920) or one command at a time, and server replies.

aiosmtpd servers (tests/smtp/servers.py) show from the server side whether MAIL, RCPT and DATA arrived in one
write.  A scripted TCP server (plain text, no AUTH) sends what aiosmtpd cannot: replies cut into pieces at odd
places, multi-line replies, 354 to DATA after every recipient was refused, garbage, or no reply at all; and it
records every byte the client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailgate.errors import SmtpError, SmtpPermanentError, SmtpTransientError
from mailgate.smtp import SmtpConnection
from mailgate.smtp.channel import CommandChannel
from mailgate.types import Authentication, EmailServerConfig, Security

from .conftest import ServerFactory
from .servers import FakeTokenSource, Mailbox, RunningServer

SENDER = "user@example.com"
ONE, TWO = "one@example.com", "two@example.com"
NOBODY = "nobody@example.com"


def raw_message(subject: str = "Pipelined") -> bytes:
    """7-bit message bytes (sent as they are) with lines that need dot-stuffing."""
    return (
        b"From: user@example.com\r\n"
        b"To: one@example.com, two@example.com\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Message-ID: <pipelining@example.com>\r\n"
        b"\r\n"
        b"Hello,\r\n"
        b".a line starting with a dot\r\n"
        b".\r\n"
        b"The end.\r\n"
    )


def dot_stuffed(raw: bytes) -> bytes:
    """``raw`` as it travels after DATA (without the final "." line)."""
    assert not raw.startswith(b".")
    return raw.replace(b"\r\n.", b"\r\n..")


def ehlo_detail(conn: SmtpConnection) -> str:
    """What the server offered in its last EHLO (after STARTTLS)."""
    return [s for s in conn.steps if s.name == "ehlo"][-1].detail


# -- aiosmtpd: what arrives in one write ------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One MAIL or RCPT as the server handled it, and the bytes it had already received after that line."""

    command: str
    argument: str
    peer: Any
    read_ahead: bytes


@dataclass
class WireMailbox(Mailbox):
    """A Mailbox that notes what the client had sent beyond each MAIL and RCPT line when the server handles it:
    pipelined commands are already in aiosmtpd's stream buffer; commands sent one at a time are not."""

    seen: list[Seen] = field(default_factory=list)

    def _note(self, server: SMTP, session: Session, command: str, argument: str) -> None:
        # aiosmtpd reads its commands from an asyncio.StreamReader: what is buffered came in with this line.
        self.seen.append(Seen(command, argument, session.peer, bytes(server._reader._buffer)))  # type: ignore[attr-defined]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._note(server, session, "MAIL", address)
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._note(server, session, "RCPT", address)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.seen.append(Seen("RSET", "", session.peer, b""))
        return "250 2.0.0 OK"


def wire(server: RunningServer) -> WireMailbox:
    assert isinstance(server.handler, WireMailbox)
    return server.handler


def oauth_connection(server: RunningServer, client_context: ssl.SSLContext) -> SmtpConnection:
    return SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context)


async def test_with_pipelining_mail_rcpts_and_data_arrive_in_one_write(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(WireMailbox())
    raw = raw_message()
    async with oauth_connection(server, client_context) as conn:
        assert "PIPELINING" in ehlo_detail(conn)
        result = await conn.send(raw, sender=SENDER, recipients=[ONE, TWO])
    assert result.accepted == (ONE, TWO) and result.refused == {}
    assert result.reply == "2.0.0 OK queued as 1"
    mail, *rcpts = wire(server).seen
    assert (mail.command, mail.argument) == ("MAIL", SENDER)
    # When the server handles MAIL, both RCPTs and DATA are already there, and nothing more (the message waits
    # for 354): the three commands came in one write.
    assert mail.read_ahead == b"RCPT TO:<one@example.com>\r\nRCPT TO:<two@example.com>\r\nDATA\r\n"
    assert [(r.command, r.argument) for r in rcpts] == [("RCPT", ONE), ("RCPT", TWO)]
    [received] = server.handler.messages
    assert received.content == raw
    assert received.mail_from == SENDER and received.rcpt_tos == (ONE, TWO)


async def test_without_pipelining_commands_go_one_at_a_time(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(WireMailbox(pipelining=False))
    raw = raw_message()
    async with oauth_connection(server, client_context) as conn:
        assert "PIPELINING" not in ehlo_detail(conn)
        for _ in range(2):  # and again on the same connection
            result = await conn.send(raw, sender=SENDER, recipients=[ONE, TWO])
            assert result.accepted == (ONE, TWO) and result.reply.startswith("2.0.0 OK queued")
    seen = wire(server).seen
    assert [(s.command, s.argument) for s in seen] == [("MAIL", SENDER), ("RCPT", ONE), ("RCPT", TWO)] * 2
    # Each command was sent only after the reply to the one before: nothing was waiting behind it.
    assert [s.read_ahead for s in seen] == [b""] * 6
    assert [m.content for m in server.handler.messages] == [raw, raw]
    assert len({m.peer for m in server.handler.messages}) == 1


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-at-a-time"])
async def test_partial_recipient_refusal(
    start_server: ServerFactory, client_context: ssl.SSLContext, pipelining: bool
) -> None:
    refusal = "550 5.1.1 The email account that you tried to reach does not exist."
    server = start_server(WireMailbox(pipelining=pipelining, refuse={NOBODY: refusal}))
    raw = raw_message()
    async with oauth_connection(server, client_context) as conn:
        result = await conn.send(raw, sender=SENDER, recipients=[ONE, NOBODY, TWO])
    assert result.accepted == (ONE, TWO)
    assert result.refused == {NOBODY: (550, refusal[4:])}
    [received] = server.handler.messages
    assert received.rcpt_tos == (ONE, TWO) and received.content == raw


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-at-a-time"])
@pytest.mark.parametrize(
    ("refusal", "error"),
    [("550 5.1.1 No such user", SmtpPermanentError), ("450 4.2.1 Mailbox busy", SmtpTransientError)],
)
async def test_all_recipients_refused(
    start_server: ServerFactory,
    client_context: ssl.SSLContext,
    pipelining: bool,
    refusal: str,
    error: type[SmtpError],
) -> None:
    other = "other@example.com"
    server = start_server(WireMailbox(pipelining=pipelining, refuse={NOBODY: refusal, other: refusal}))
    async with oauth_connection(server, client_context) as conn:
        with pytest.raises(error) as caught:
            await conn.send(raw_message("refused"), sender=SENDER, recipients=[NOBODY, other])
        assert caught.value.reply_code == int(refusal[:3])
        assert NOBODY in caught.value.message and other in caught.value.message
        assert conn.is_connected
        # The same connection carries the next message (after RSET).
        result = await conn.send(raw_message("next"), sender=SENDER, recipients=[ONE])
        assert result.accepted == (ONE,)
    [received] = server.handler.messages
    assert b"Subject: next" in received.content and received.rcpt_tos == (ONE,)
    seen = wire(server).seen
    assert [s.command for s in seen] == ["MAIL", "RCPT", "RCPT", "RSET", "MAIL", "RCPT"]
    assert len({s.peer for s in seen if s.command != "RSET"}) == 1


# -- a scripted server ------------------------------------------------------------------------------------


class ClientClosed(Exception):
    """The client closed the connection where the script expected more."""


@dataclass
class Peer:
    """The server's side of one scripted connection; ``received`` is every byte the client sent on it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: bytearray = field(default_factory=bytearray)
    #: The messages this connection took (dot-stuffed, as they came after DATA).
    messages: list[bytes] = field(default_factory=list)
    closed_by_client: bool = False

    async def line(self) -> bytes:
        line = await self.reader.readline()
        self.received += line
        return line

    async def expect(self, *prefixes: bytes) -> list[bytes]:
        """The next lines, one per prefix, checked to start with it."""
        lines = []
        for prefix in prefixes:
            line = await self.line()
            assert line.startswith(prefix), (line, prefix)
            lines.append(line)
        return lines

    async def send(self, *chunks: bytes) -> None:
        """Write each chunk on its own: asyncio sends it at once (TCP_NODELAY) and the pause lets the client's
        event loop take it before the next one comes."""
        for chunk in chunks:
            self.writer.write(chunk)
            await self.writer.drain()
            await asyncio.sleep(0.005)

    async def greet(self, *, pipelining: bool = True) -> None:
        await self.send(b"220 scripted.test ESMTP\r\n")
        await self.expect(b"EHLO ")
        await self.send(b"250-scripted.test\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"") + b"250 HELP\r\n")

    async def message(self) -> bytes:
        """The message after 354, up to the "." line."""
        lines = []
        while (line := await self.line()) != b".\r\n":
            if not line:
                raise ClientClosed("in the middle of the message")
            lines.append(line)
        self.messages.append(b"".join(lines))
        return self.messages[-1]

    async def transaction(self, rcpts: int = 1) -> None:
        """Accept MAIL, ``rcpts`` RCPTs, DATA and the message."""
        for command in (b"MAIL FROM:", *[b"RCPT TO:"] * rcpts, b"DATA"):
            await self.expect(command)
            await self.send(b"354 Go ahead\r\n" if command == b"DATA" else b"250 OK\r\n")
        await self.message()
        await self.send(f"250 2.0.0 OK queued as {len(self.messages)}\r\n".encode())

    async def finish(self) -> None:
        """Answer RSET and QUIT until the client quits or closes."""
        while line := await self.line():
            if line.upper().startswith(b"QUIT"):
                await self.send(b"221 2.0.0 Bye\r\n")
                return
            await self.send(b"250 2.0.0 OK\r\n" if line.upper().startswith(b"RSET") else b"502 5.5.1 No\r\n")
        self.closed_by_client = True

    async def until_closed(self) -> None:
        """Say nothing more and record whatever else comes, until the client closes (or resets) the connection."""
        with contextlib.suppress(ConnectionError):
            while data := await self.reader.read(4096):
                self.received += data
        self.closed_by_client = True


Script = Callable[[Peer], Awaitable[None]]


async def one_message(peer: Peer) -> None:
    """A script: greet, take one message, then answer RSET and QUIT."""
    await peer.greet()
    await peer.transaction()
    await peer.finish()


@dataclass
class ScriptedServer:
    port: int
    #: One per connection, in the order they came.
    peers: list[Peer]

    def config(self, *, timeout: float = 2.0) -> EmailServerConfig:
        return EmailServerConfig(
            host="127.0.0.1",
            port=self.port,
            security=Security.NONE,
            username="",
            sender=SENDER,
            authentication=Authentication.NONE,
            timeout=timeout,
        )


@contextlib.asynccontextmanager
async def scripted_server(*scripts: Script) -> AsyncIterator[ScriptedServer]:
    """A TCP server on 127.0.0.1 that plays ``scripts[i]`` on its i-th connection (and closes any further one).

    On leaving, scripts get a moment to finish (their client has closed by then), and a script's failed
    assertion fails the test.
    """
    peers: list[Peer] = []
    tasks: list[asyncio.Task[Any]] = []

    async def play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        peer = Peer(reader, writer)
        peers.append(peer)
        try:
            if len(peers) <= len(scripts):
                await scripts[len(peers) - 1](peer)
        finally:
            writer.close()

    server = await asyncio.start_server(play, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield ScriptedServer(port, peers)
    finally:
        server.close()
        await server.wait_closed()
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for peer in peers:
            with contextlib.suppress(ConnectionError):
                await peer.writer.wait_closed()
    failures = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
    if failures:
        raise failures[0]


def cut(data: bytes, sizes: tuple[int, ...] = (1, 4, 7, 2, 11, 3, 5)) -> Iterator[bytes]:
    """``data`` in pieces of the given sizes, over and over: cuts inside codes, texts, CRLFs and across replies."""
    start, i = 0, 0
    while start < len(data):
        yield data[start : start + sizes[i % len(sizes)]]
        start += sizes[i % len(sizes)]
        i += 1


@contextlib.asynccontextmanager
async def bounded(seconds: float = 5.0) -> AsyncIterator[None]:
    """Fail rather than hang."""
    async with asyncio.timeout(seconds):
        yield


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-at-a-time"])
async def test_replies_in_pieces_and_on_several_lines(pipelining: bool) -> None:
    raw = raw_message()
    replies = [
        b"250-2.1.0 Sender\r\n250 2.1.0 OK\r\n",
        b"250 2.1.5 OK\r\n",
        b"250-2.1.5 Recipient\r\n250-second line\r\n250 2.1.5 OK\r\n",
        b"354 Go ahead\r\n",
    ]
    final = b"250-2.0.0 Queued\r\n250-on two\r\n250 2.0.0 lines, id=4711\r\n"
    commands: list[bytes] = []

    async def script(peer: Peer) -> None:
        await peer.greet(pipelining=pipelining)
        if pipelining:  # all commands, then all replies: pieces that end one reply and begin the next
            commands.extend(await peer.expect(b"MAIL", b"RCPT", b"RCPT", b"DATA"))
            await peer.send(*cut(b"".join(replies)))
        else:
            for command, reply in zip([b"MAIL", b"RCPT", b"RCPT", b"DATA"], replies, strict=True):
                commands.extend(await peer.expect(command))
                await peer.send(*cut(reply))
        await peer.message()
        await peer.send(*cut(final))
        await peer.finish()

    async with scripted_server(script) as server, bounded(), SmtpConnection(server.config()) as conn:
        result = await conn.send(raw, sender=SENDER, recipients=[ONE, TWO])
        assert conn.is_connected
    assert result.accepted == (ONE, TWO) and result.refused == {}
    assert result.reply == "2.0.0 Queued | on two | 2.0.0 lines, id=4711"
    assert b"".join(commands) == b"MAIL FROM:<user@example.com>\r\nRCPT TO:<one@example.com>\r\n" + (
        b"RCPT TO:<two@example.com>\r\nDATA\r\n"
    )
    [peer] = server.peers
    assert peer.messages == [dot_stuffed(raw)]
    assert peer.received.endswith(b"\r\n.\r\nQUIT\r\n")


async def test_354_after_every_recipient_was_refused_sends_nothing_and_closes() -> None:
    # Pipelined, DATA went out with the RCPTs (one at a time, it is not sent: see the next test).
    async def script(peer: Peer) -> None:
        await peer.greet(pipelining=True)
        for command, reply in [
            (b"MAIL", b"250 2.1.0 OK\r\n"),
            (b"RCPT", b"550 5.1.1 No such user\r\n"),
            (b"RCPT", b"550 5.1.1 No such user\r\n"),
            (b"DATA", b"354 Go ahead anyway\r\n"),  # RFC 2920 s3.1: should be 554 "no valid recipients"
        ]:
            await peer.expect(command)
            await peer.send(reply)
        await peer.until_closed()

    async with scripted_server(script) as server, bounded():
        conn = SmtpConnection(server.config())
        with pytest.raises(SmtpPermanentError) as caught:
            await conn.send(raw_message(), sender=SENDER, recipients=[ONE, TWO])
        assert caught.value.reply_code == 550 and ONE in caught.value.message
        assert not conn.is_connected
        await conn.close()
    [peer] = server.peers
    # The server waits for a message: nothing at all was sent after DATA (not even RSET or QUIT).
    assert peer.received.endswith(b"\r\nDATA\r\n") and peer.closed_by_client


@pytest.mark.parametrize(
    ("exchange", "stage"),
    [
        pytest.param([(b"MAIL", b"550 5.7.1 Sender refused\r\n")], "mail", id="refused-mail"),
        pytest.param(
            [
                (b"MAIL", b"250 2.1.0 OK\r\n"),
                (b"RCPT", b"550 5.1.1 No such user\r\n"),
                (b"RCPT", b"450 4.2.1 Mailbox busy\r\n"),
            ],
            "rcpt",
            id="every-rcpt-refused",
        ),
    ],
)
async def test_one_at_a_time_nothing_is_sent_that_cannot_succeed(
    exchange: list[tuple[bytes, bytes]], stage: str
) -> None:
    """Without PIPELINING, no RCPT after a refused MAIL and no DATA once every RCPT was refused (each would
    only earn a 503): RSET, and the connection carries the next message."""

    async def script(peer: Peer) -> None:
        await peer.greet(pipelining=False)
        for command, reply in exchange:
            await peer.expect(command)
            await peer.send(reply)
        await peer.expect(b"RSET")
        await peer.send(b"250 2.0.0 OK\r\n")
        for command, reply in [
            (b"MAIL", b"250 2.1.0 OK\r\n"),
            (b"RCPT", b"250 2.1.5 OK\r\n"),
            (b"DATA", b"354 Go ahead\r\n"),
        ]:
            await peer.expect(command)
            await peer.send(reply)
        await peer.message()
        await peer.send(b"250 2.0.0 Queued\r\n")
        await peer.finish()

    async with scripted_server(script) as server, bounded(), SmtpConnection(server.config()) as conn:
        with pytest.raises(SmtpError) as caught:
            await conn.send(raw_message("refused"), sender=SENDER, recipients=[ONE, TWO])
        assert caught.value.reply_code == int(exchange[-1][1][:3])
        assert conn.is_connected
        result = await conn.send(raw_message("next"), sender=SENDER, recipients=[ONE])
        assert result.accepted == (ONE,)
    [peer] = server.peers
    assert b"DATA" not in bytes(peer.received).split(b"RSET")[0]
    if stage == "mail":
        assert b"RCPT" not in bytes(peer.received).split(b"RSET")[0]


@pytest.mark.parametrize("settled", [True, False], ids=["done-at-once", "still-running"])
async def test_the_message_and_its_end_go_in_one_write_when_before_data_is_done(
    settled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox's commit of the previous result is usually done within a step of the event loop: then the
    message and its final "." leave in one write (the server wakes up once, not twice); otherwise the message
    goes out while it runs, and the "." after it."""
    writes: list[bytes] = []
    real = CommandChannel.write
    body = dot_stuffed(raw_message())
    gate = asyncio.Event()

    def write(channel: CommandChannel, data: bytes) -> None:
        writes.append(bytes(data))
        real(channel, data)
        if data == body:
            gate.set()  # still running: it finishes once the message has gone out on its own

    monkeypatch.setattr(CommandChannel, "write", write)

    async def before() -> None:
        if not settled:
            await gate.wait()

    async with scripted_server(one_message) as server, bounded(), SmtpConnection(server.config()) as conn:
        recording = asyncio.ensure_future(before())
        await conn.send(raw_message(), sender=SENDER, recipients=[ONE], before_data=recording)
    [peer] = server.peers
    assert peer.messages == [body]
    after_data = writes[next(i for i, w in enumerate(writes) if w.endswith(b"DATA\r\n")) + 1 :]
    if settled:
        assert after_data[0] == body + b".\r\n"
    else:
        assert after_data[:2] == [body, b".\r\n"]


async def test_before_data_that_raises_leaves_the_message_unfinished_and_closes() -> None:
    """The message goes out while before_data runs, but never its final "." line: closing abandons it."""

    async def script(peer: Peer) -> None:
        await peer.greet()
        for command in (b"MAIL", b"RCPT", b"DATA"):
            await peer.expect(command)
            await peer.send(b"354 Go ahead\r\n" if command == b"DATA" else b"250 OK\r\n")
        with pytest.raises(ClientClosed):
            await peer.message()
        await peer.until_closed()

    async def before_data() -> None:
        await asyncio.sleep(0.05)  # the message is on its way meanwhile
        raise RuntimeError("recording the previous message failed")

    async with scripted_server(script) as server, bounded():
        conn = SmtpConnection(server.config())
        with pytest.raises(RuntimeError, match="recording"):
            await conn.send(raw_message(), sender=SENDER, recipients=[ONE], before_data=before_data())
        assert not conn.is_connected
        await conn.close()
    [peer] = server.peers
    assert peer.messages == [] and peer.closed_by_client
    # The message body came (without its end): everything after DATA is the dot-stuffed message, no "." line.
    assert peer.received.endswith(b"\r\nDATA\r\n" + dot_stuffed(raw_message()))


@pytest.mark.parametrize(
    ("at", "reply"),
    [
        ("MAIL", b"hello\r\n"),
        ("MAIL", b"250-2.1.0 Sender\r\n251 2.1.0 OK\r\n"),  # a continuation with another code
        ("RCPT", b"25\r\n"),
        ("MAIL", b"250 2.1.0 OK\r\n2x0 2.1.5 OK\r\n"),  # MAIL's reply is fine, RCPT's is not
        ("message", b"\xff\xfe\r\n"),
    ],
    ids=["text", "mixed-codes", "short", "after-a-good-one", "binary"],
)
async def test_malformed_reply_is_an_error_and_closes(at: str, reply: bytes) -> None:
    async def script(peer: Peer) -> None:
        await peer.greet()
        for command in (b"MAIL", b"RCPT", b"DATA"):
            await peer.expect(command)
            if command.decode() == at:
                await peer.send(reply)
                await peer.until_closed()
                return
            await peer.send(b"354 Go ahead\r\n" if command == b"DATA" else b"250 OK\r\n")
        await peer.message()
        await peer.send(reply)
        await peer.until_closed()

    async with scripted_server(script) as server, bounded():
        conn = SmtpConnection(server.config())
        with pytest.raises(SmtpError) as caught:
            await conn.send(raw_message(), sender=SENDER, recipients=[ONE])
        assert "Malformed" in caught.value.message
        assert not conn.is_connected
        await conn.close()
    [peer] = server.peers
    assert peer.closed_by_client
    if at != "message":
        assert peer.received.endswith(b"\r\nDATA\r\n")  # no message after a broken envelope reply


@pytest.mark.parametrize("silent_at", ["DATA", "message"])
async def test_a_reply_that_never_comes_is_a_transient_timeout_and_closes(silent_at: str) -> None:
    async def script(peer: Peer) -> None:
        await peer.greet()
        await peer.expect(b"MAIL", b"RCPT", b"DATA")
        if silent_at == "DATA":
            await peer.send(b"250 OK\r\n250 OK\r\n")
        else:
            await peer.send(b"250 OK\r\n250 OK\r\n354 Go ahead\r\n")
            await peer.message()
        await peer.until_closed()  # and never answer

    async with scripted_server(script) as server, bounded():
        conn = SmtpConnection(server.config(timeout=0.5))
        with pytest.raises(SmtpTransientError, match="Timed out") as caught:
            await conn.send(raw_message(), sender=SENDER, recipients=[ONE])
        assert caught.value.retryable
        assert not conn.is_connected
        await conn.close()
    [peer] = server.peers
    assert peer.closed_by_client
    assert len(peer.messages) == (1 if silent_at == "message" else 0)


@pytest.mark.parametrize("closes", ["after-the-message", "with-421", "at-the-next-mail", "421-left-open"])
async def test_a_stale_connection_is_replaced_and_the_message_sent_once(closes: str) -> None:
    async def first(peer: Peer) -> None:
        await peer.greet()
        await peer.transaction()
        if closes == "with-421":
            await peer.send(b"421 4.4.2 scripted.test Error: timeout exceeded\r\n")
        elif closes == "421-left-open":  # the 421 is there before the client sees the connection close
            await peer.send(b"421 4.4.2 scripted.test Error: timeout exceeded\r\n")
            await peer.until_closed()
        elif closes == "at-the-next-mail":
            await peer.expect(b"MAIL")  # the next message arrives: close without a word
        # leaving the script closes the connection

    async with scripted_server(first, one_message) as server, bounded(), SmtpConnection(server.config()) as conn:
        await conn.send(raw_message("first"), sender=SENDER, recipients=[ONE])
        if closes == "421-left-open":
            await asyncio.sleep(0.2)  # the 421 arrives: an unsolicited reply, not the next MAIL's
        elif closes != "at-the-next-mail":
            while conn.is_connected:  # the client notices the close while idle
                await asyncio.sleep(0.01)
        result = await conn.send(raw_message("second"), sender=SENDER, recipients=[ONE])
        assert result.accepted == (ONE,) and result.reply == "2.0.0 OK queued as 1"
        assert conn.is_connected
    assert [peer.messages for peer in server.peers] == [
        [dot_stuffed(raw_message("first"))],
        [dot_stuffed(raw_message("second"))],
    ]


# A send cancelled while it waits for replies (asyncio.timeout or wait_for around conn.send, a cancelled task)
# must close the connection: otherwise the replies still to come would be taken by the next send for its own,
# its commands would become the body of the cancelled message (the server is in DATA mode after its 354), and
# the second message would reach the first one's recipients while SendResult says otherwise.
async def test_a_cancelled_send_does_not_leave_replies_for_the_next() -> None:
    release = asyncio.Event()

    async def first(peer: Peer) -> None:
        await peer.greet()
        await peer.expect(b"MAIL", b"RCPT", b"DATA")
        await release.wait()  # slow: the client gives up before these replies
        with contextlib.suppress(ConnectionError, ClientClosed):  # the client may have closed meanwhile
            await peer.send(b"250 OK\r\n250 OK\r\n354 Go ahead\r\n")
            await peer.message()
            await peer.send(b"250 2.0.0 OK queued\r\n")
            await peer.finish()

    async with scripted_server(first, one_message) as server, bounded(), SmtpConnection(server.config()) as conn:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await conn.send(raw_message("first"), sender=SENDER, recipients=[ONE])
        release.set()
        await conn.send(raw_message("second"), sender=SENDER, recipients=[TWO])
    # The first message was abandoned; the second went out once, on a new connection, to its own recipient.
    assert server.peers[0].messages == []
    assert [peer.messages for peer in server.peers[1:]] == [[dot_stuffed(raw_message("second"))]]
    assert b"RCPT TO:<two@example.com>" in server.peers[1].received

"""A scripted SMTP server for the tests: a TCP server (plain text, no AUTH) that sends what aiosmtpd cannot:
replies cut into pieces at odd places, multi-line replies, garbage, or no reply at all; and that records every
byte the client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mailgate.types import Authentication, EmailServerConfig, Security

SENDER = "user@example.com"
ONE, TWO = "one@example.com", "two@example.com"


def raw_message(subject: str = "Scripted") -> bytes:
    """7-bit message bytes (sent as they are) with lines that need dot-stuffing."""
    return (
        b"From: user@example.com\r\n"
        b"To: one@example.com, two@example.com\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Message-ID: <scripted@example.com>\r\n"
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

    async def greet(self) -> None:
        await self.send(b"220 scripted.test ESMTP\r\n")
        await self.expect(b"EHLO ")
        await self.send(b"250-scripted.test\r\n250-PIPELINING\r\n250 HELP\r\n")

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

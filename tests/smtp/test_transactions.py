"""Mail transactions against a scripted server (tests/smtp/scripted.py): replies in pieces and on several lines,
nothing sent that cannot succeed, malformed or missing replies, stale and cancelled connections.

The transport sends one command at a time, whether or not the server offers PIPELINING (these scripts offer it,
as Gmail and Microsoft 365 do): every script expects each command only after it answered the one before.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from mailgate.errors import SmtpError, SmtpTransientError
from mailgate.smtp import SmtpConnection

from .scripted import (
    ONE,
    SENDER,
    TWO,
    ClientClosed,
    Peer,
    bounded,
    cut,
    dot_stuffed,
    one_message,
    raw_message,
    scripted_server,
)


async def test_replies_in_pieces_and_on_several_lines() -> None:
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
        await peer.greet()
        for command, reply in zip([b"MAIL", b"RCPT", b"RCPT", b"DATA"], replies, strict=True):
            commands.extend(await peer.expect(command))
            await peer.send(*cut(reply))
        await peer.message()
        await peer.send(*cut(final))
        await peer.finish()

    async with scripted_server(script) as server, bounded(), SmtpConnection(server.config()) as conn:
        result = await conn.send(SENDER, [ONE, TWO], raw)
        assert conn.is_connected
    assert result.accepted == (ONE, TWO) and result.refused == {}
    assert result.reply == "2.0.0 Queued | on two | 2.0.0 lines, id=4711"
    assert b"".join(commands) == b"MAIL FROM:<user@example.com>\r\nRCPT TO:<one@example.com>\r\n" + (
        b"RCPT TO:<two@example.com>\r\nDATA\r\n"
    )
    [peer] = server.peers
    assert peer.messages == [dot_stuffed(raw)]
    assert peer.received.endswith(b"\r\n.\r\nQUIT\r\n")


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
        pytest.param(
            [
                (b"MAIL", b"250 2.1.0 OK\r\n"),
                (b"RCPT", b"250 2.1.5 OK\r\n"),
                (b"RCPT", b"250 2.1.5 OK\r\n"),
                (b"DATA", b"554 5.5.1 No thanks\r\n"),
            ],
            "data",
            id="refused-data",
        ),
    ],
)
async def test_nothing_is_sent_that_cannot_succeed(exchange: list[tuple[bytes, bytes]], stage: str) -> None:
    """No RCPT after a refused MAIL, no DATA once every RCPT was refused, no message after a refused DATA (each
    would only earn a 503): RSET, and the connection carries the next message."""

    async def script(peer: Peer) -> None:
        await peer.greet()
        for command, reply in exchange:
            await peer.expect(command)
            await peer.send(reply)
        await peer.expect(b"RSET")
        await peer.send(b"250 2.0.0 OK\r\n")
        await peer.transaction()
        await peer.finish()

    async with scripted_server(script) as server, bounded(), SmtpConnection(server.config()) as conn:
        with pytest.raises(SmtpError) as caught:
            await conn.send(SENDER, [ONE, TWO], raw_message("refused"))
        assert caught.value.reply_code == int(exchange[-1][1][:3])
        assert conn.is_connected
        result = await conn.send(SENDER, [ONE], raw_message("next"))
        assert result.accepted == (ONE,)
    [peer] = server.peers
    before_rset = bytes(peer.received).split(b"RSET")[0]
    assert b"Subject: refused" not in before_rset
    if stage != "data":
        assert b"DATA" not in before_rset
    if stage == "mail":
        assert b"RCPT" not in before_rset
    assert peer.messages == [dot_stuffed(raw_message("next"))]


@pytest.mark.parametrize(
    ("at", "reply"),
    [
        ("MAIL", b"hello\r\n"),
        ("RCPT", b"25\r\n"),
        ("DATA", b"2x0 2.1.5 OK\r\n"),
        ("message", b"\xff\xfe\r\n"),
    ],
    ids=["text", "short", "letters", "binary"],
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
            await conn.send(SENDER, [ONE], raw_message())
        assert "Malformed" in caught.value.message
        assert not conn.is_connected
        await conn.close()
    [peer] = server.peers
    assert peer.closed_by_client
    # Nothing after the command whose reply was broken (no QUIT, no RSET, no message).
    last = bytes(peer.received).split(b"\r\n")[-2]
    assert last == b"." if at == "message" else last.startswith(at.encode())
    assert len(peer.messages) == (1 if at == "message" else 0)


@pytest.mark.parametrize("silent_at", ["RCPT", "DATA", "message"])
async def test_a_reply_that_never_comes_is_a_transient_timeout_and_closes(silent_at: str) -> None:
    async def script(peer: Peer) -> None:
        await peer.greet()
        for command in (b"MAIL", b"RCPT", b"DATA"):
            await peer.expect(command)
            if command.decode() == silent_at:
                await peer.until_closed()  # and never answer
                return
            await peer.send(b"354 Go ahead\r\n" if command == b"DATA" else b"250 OK\r\n")
        await peer.message()
        await peer.until_closed()

    async with scripted_server(script) as server, bounded():
        conn = SmtpConnection(server.config(timeout=0.5))
        with pytest.raises(SmtpTransientError, match="Timed out") as caught:
            await conn.send(SENDER, [ONE], raw_message())
        assert caught.value.retryable
        assert not conn.is_connected
        await conn.close()
    [peer] = server.peers
    assert peer.closed_by_client
    assert len(peer.messages) == (1 if silent_at == "message" else 0)


@pytest.mark.parametrize("closes", ["after-the-message", "with-421", "at-the-next-mail", "421-at-the-next-mail"])
async def test_a_stale_connection_is_replaced_and_the_message_sent_once(closes: str) -> None:
    async def first(peer: Peer) -> None:
        await peer.greet()
        await peer.transaction()
        if closes == "with-421":  # RFC 5321 s3.8: a server closing an idle connection may say 421 first
            await peer.send(b"421 4.4.2 scripted.test Error: timeout exceeded\r\n")
        elif closes == "at-the-next-mail":
            await peer.expect(b"MAIL")  # the next message arrives: close without a word
        elif closes == "421-at-the-next-mail":
            await peer.expect(b"MAIL")
            await peer.send(b"421 4.4.2 scripted.test Error: timeout exceeded\r\n")
        # leaving the script closes the connection

    async with scripted_server(first, one_message) as server, bounded(), SmtpConnection(server.config()) as conn:
        await conn.send(SENDER, [ONE], raw_message("first"))
        if not closes.endswith("at-the-next-mail"):
            while conn.is_connected:  # the client notices the close while idle
                await asyncio.sleep(0.01)
        result = await conn.send(SENDER, [ONE], raw_message("second"))
        assert result.accepted == (ONE,) and result.reply == "2.0.0 OK queued as 1"
        assert conn.is_connected
    assert [peer.messages for peer in server.peers] == [
        [dot_stuffed(raw_message("first"))],
        [dot_stuffed(raw_message("second"))],
    ]


async def test_a_connection_lost_after_the_envelope_is_not_retried_by_the_transport() -> None:
    """Once the server has answered a command of the message, it is the caller's to retry (later): the
    transport does not send it again at once."""

    async def script(peer: Peer) -> None:
        await peer.greet()
        await peer.transaction()
        await peer.expect(b"MAIL")
        await peer.send(b"250 OK\r\n")
        await peer.expect(b"RCPT")  # and close

    async with scripted_server(script, one_message) as server, bounded(), SmtpConnection(server.config()) as conn:
        await conn.send(SENDER, [ONE], raw_message("first"))
        with pytest.raises(SmtpTransientError, match="closed the connection"):
            await conn.send(SENDER, [ONE], raw_message("second"))
        assert not conn.is_connected
    assert len(server.peers) == 1


# A send cancelled while it waits for replies (asyncio.timeout or wait_for around conn.send, a cancelled task)
# must close the connection: otherwise the replies still to come would be taken by the next send for its own,
# its commands would become the body of the cancelled message (the server is in DATA mode after its 354), and
# the second message would reach the first one's recipients while SendResult says otherwise.
@pytest.mark.parametrize("slow_at", ["MAIL", "DATA", "message"])
async def test_a_cancelled_send_does_not_leave_replies_for_the_next(slow_at: str) -> None:
    release = asyncio.Event()

    async def first(peer: Peer) -> None:
        await peer.greet()
        with contextlib.suppress(ConnectionError, ClientClosed, AssertionError):  # the client closes meanwhile
            for command in (b"MAIL", b"RCPT", b"DATA"):
                await peer.expect(command)
                if command.decode() == slow_at:
                    await release.wait()  # slow: the client gives up before this reply
                await peer.send(b"354 Go ahead\r\n" if command == b"DATA" else b"250 OK\r\n")
            await peer.message()
            if slow_at == "message":
                await release.wait()
            await peer.send(b"250 2.0.0 OK queued\r\n")
            await peer.finish()

    async with scripted_server(first, one_message) as server, bounded(), SmtpConnection(server.config()) as conn:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await conn.send(SENDER, [ONE], raw_message("first"))
        assert not conn.is_connected
        release.set()
        await conn.send(SENDER, [TWO], raw_message("second"))
    # The second went out once, on a new connection, to its own recipient.
    assert [peer.messages for peer in server.peers[1:]] == [[dot_stuffed(raw_message("second"))]]
    assert b"RCPT TO:<two@example.com>" in server.peers[1].received
    assert b"RCPT TO:<two@example.com>" not in server.peers[0].received

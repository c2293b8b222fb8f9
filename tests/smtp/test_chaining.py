"""The next message's envelope in the same write as the final "." of the one before (RFC 2920 s3.1: message
content may be followed by more commands in a group): one round trip per message instead of two.

``SmtpConnection.send(..., key=k, then=NextMessage(..., key=k2))`` writes the next envelope ahead; the next
``send`` with ``key=k2`` only reads its replies.  Whatever happens to the first message, the second is sent
once or not at all, and never mistaken for another.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailgate.errors import SmtpPermanentError, SmtpTransientError
from mailgate.smtp import SmtpConnection, transaction, transport
from mailgate.smtp.transport import NextMessage

from .conftest import ServerFactory
from .test_pipelining import (
    ONE,
    SENDER,
    TWO,
    Peer,
    WireMailbox,
    bounded,
    dot_stuffed,
    oauth_connection,
    one_message,
    raw_message,
    scripted_server,
)


def nxt(subject: str, recipients: list[str] | None = None) -> NextMessage:
    return NextMessage(raw_message(subject), SENDER, recipients or [ONE], subject)


@dataclass
class EndMailbox(WireMailbox):
    """Also notes what had arrived beyond each message's final "." when the server handles the message."""

    after_end: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.after_end.append(bytes(server._reader._buffer))  # type: ignore[attr-defined]
        return await super().handle_DATA(server, session, envelope)


async def test_the_next_envelope_goes_out_with_the_final_dot(
    start_server: ServerFactory, client_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared: list[bytes] = []  # the messages whose envelope and data were prepared, in order
    real = transaction.envelope_commands

    def counted(channel: Any, message: Any, sender: str, rcpts: list[str]) -> transaction.Prepared:
        prepared.append(message)
        return real(channel, message, sender, rcpts)

    monkeypatch.setattr(transaction, "envelope_commands", counted)
    monkeypatch.setattr(transport, "envelope_commands", counted)
    server = start_server(EndMailbox())
    subjects = ["m0", "m1", "m2"]
    async with oauth_connection(server, client_context) as conn:
        for i, subject in enumerate(subjects):
            then = nxt(subjects[i + 1]) if i + 1 < len(subjects) else None
            result = await conn.send(raw_message(subject), sender=SENDER, recipients=[ONE], key=subject, then=then)
            assert result.accepted == (ONE,) and result.reply == f"2.0.0 OK queued as {i + 1}"
    box = server.handler
    assert isinstance(box, EndMailbox)
    assert [m.content for m in box.messages] == [raw_message(s) for s in subjects]
    assert len({m.peer for m in box.messages}) == 1
    # When the server handled m0 and m1, the next MAIL, RCPT and DATA had come with their final ".".
    envelope = b"MAIL FROM:<user@example.com> SIZE=%d BODY=8BITMIME\r\nRCPT TO:<one@example.com>\r\nDATA\r\n"
    assert box.after_end[:2] == [envelope % len(raw_message("m1")), envelope % len(raw_message("m2"))]
    assert box.after_end[2] == b""
    # Each message prepared once: m1 and m2 when they went ahead, not again for their own transactions.
    assert sorted(prepared) == [raw_message(s) for s in subjects]


async def test_without_pipelining_nothing_goes_ahead(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(EndMailbox(pipelining=False))
    async with oauth_connection(server, client_context) as conn:
        await conn.send(raw_message("m0"), sender=SENDER, recipients=[ONE], key="m0", then=nxt("m1"))
        await conn.send(raw_message("m1"), sender=SENDER, recipients=[ONE], key="m1")
    box = server.handler
    assert isinstance(box, EndMailbox)
    assert box.after_end == [b"", b""] and [s.read_ahead for s in box.seen] == [b""] * 4
    assert [m.content for m in box.messages] == [raw_message("m0"), raw_message("m1")]


async def test_a_refused_message_does_not_disturb_the_next_one_ahead() -> None:
    """The final "." refused (554): the transaction is over; no RSET, which would undo the next one."""

    async def script(peer: Peer) -> None:
        await peer.greet()
        await peer.transaction()
        await peer.expect(b"MAIL", b"RCPT", b"DATA")
        await peer.send(b"250 OK\r\n250 OK\r\n354 Go ahead\r\n")
        await peer.message()
        await peer.expect(b"MAIL", b"RCPT", b"DATA")  # came with the "."
        await peer.send(b"554 5.6.0 Message refused\r\n250 OK\r\n250 OK\r\n354 Go ahead\r\n")
        await peer.message()
        await peer.send(b"250 2.0.0 OK queued as 3\r\n")
        await peer.finish()

    async with scripted_server(script) as server, bounded(), SmtpConnection(server.config()) as conn:
        await conn.send(raw_message("m0"), sender=SENDER, recipients=[ONE])
        with pytest.raises(SmtpPermanentError) as caught:
            await conn.send(raw_message("m1"), sender=SENDER, recipients=[ONE], key="m1", then=nxt("m2"))
        assert caught.value.reply_code == 554
        result = await conn.send(raw_message("m2"), sender=SENDER, recipients=[ONE], key="m2")
        assert result.reply == "2.0.0 OK queued as 3"
    [peer] = server.peers
    assert peer.messages == [dot_stuffed(raw_message(s)) for s in ("m0", "m1", "m2")]
    assert b"RSET" not in peer.received and peer.received.endswith(b"\r\n.\r\nQUIT\r\n")


async def test_the_next_envelope_refused_fails_only_that_message() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet()
        await peer.expect(b"MAIL", b"RCPT", b"DATA")
        await peer.send(b"250 OK\r\n250 OK\r\n354 Go ahead\r\n")
        await peer.message()
        await peer.expect(b"MAIL", b"RCPT", b"RCPT", b"DATA")
        await peer.send(b"250 2.0.0 OK queued as 1\r\n", b"550 5.7.1 Sender refused\r\n503 5.5.1 MAIL first\r\n")
        await peer.send(b"503 5.5.1 MAIL first\r\n503 5.5.1 No valid recipients\r\n")
        await peer.expect(b"RSET")
        await peer.send(b"250 2.0.0 Reset\r\n")
        await peer.transaction()
        await peer.finish()

    async with scripted_server(script) as server, bounded(), SmtpConnection(server.config()) as conn:
        result = await conn.send(raw_message("m0"), sender=SENDER, recipients=[ONE], then=nxt("m1", [ONE, TWO]))
        assert result.reply == "2.0.0 OK queued as 1"
        with pytest.raises(SmtpPermanentError) as caught:
            await conn.send(raw_message("m1"), sender=SENDER, recipients=[ONE, TWO], key="m1")
        assert caught.value.reply_code == 550
        assert conn.is_connected
        await conn.send(raw_message("m2"), sender=SENDER, recipients=[ONE], key="m2")
    [peer] = server.peers
    assert peer.messages == [dot_stuffed(raw_message("m0")), dot_stuffed(raw_message("m2"))]


async def test_a_server_closing_after_the_dot_gets_the_next_message_on_a_new_connection() -> None:
    async def closes(peer: Peer) -> None:
        await peer.greet()
        await peer.expect(b"MAIL", b"RCPT", b"DATA")
        await peer.send(b"250 OK\r\n250 OK\r\n354 Go ahead\r\n")
        await peer.message()
        await peer.expect(b"MAIL", b"RCPT", b"DATA")
        await peer.send(b"421 4.3.2 Shutting down\r\n")  # and closes: the next envelope is not answered

    async with scripted_server(closes, one_message) as server, bounded():
        conn = SmtpConnection(server.config())
        with pytest.raises(SmtpTransientError) as caught:
            await conn.send(raw_message("m0"), sender=SENDER, recipients=[ONE], key="m0", then=nxt("m1"))
        assert caught.value.reply_code == 421
        result = await conn.send(raw_message("m1"), sender=SENDER, recipients=[ONE], key="m1")
        assert result.reply == "2.0.0 OK queued as 1"
        await conn.close()
    first, second = server.peers
    assert first.messages == [dot_stuffed(raw_message("m0"))]  # refused with 421: the caller retries it
    assert second.messages == [dot_stuffed(raw_message("m1"))]  # sent once, on the new connection


@pytest.mark.parametrize("how", ["another message", "close"])
async def test_an_abandoned_envelope_closes_the_connection_without_a_word(how: str) -> None:
    """After DATA went out ahead the server waits for content: only closing abandons it (no QUIT, no RSET)."""

    async def script(peer: Peer) -> None:
        await peer.greet()
        await peer.transaction()
        await peer.expect(b"MAIL", b"RCPT", b"DATA")
        await peer.send(b"250 OK\r\n250 OK\r\n354 Go ahead\r\n")
        await peer.until_closed()

    async with scripted_server(script, one_message) as server, bounded():
        conn = SmtpConnection(server.config())
        await conn.send(raw_message("m0"), sender=SENDER, recipients=[ONE], key="m0", then=nxt("m1"))
        if how == "close":
            await conn.close()
        else:
            result = await conn.send(raw_message("other"), sender=SENDER, recipients=[ONE], key="other")
            assert result.reply == "2.0.0 OK queued as 1"
            await conn.close()
    first = server.peers[0]
    assert first.received.endswith(b"\r\n.\r\nMAIL FROM:<user@example.com>\r\nRCPT TO:<one@example.com>\r\nDATA\r\n")
    assert first.closed_by_client and first.messages == [dot_stuffed(raw_message("m0"))]
    if how == "another message":
        assert server.peers[1].messages == [dot_stuffed(raw_message("other"))]
    else:
        assert len(server.peers) == 1


async def test_a_next_message_the_server_cannot_take_is_not_sent_ahead() -> None:
    """A non-ASCII address without SMTPUTF8: its own send refuses it; nothing of it goes ahead."""

    async def script(peer: Peer) -> None:
        await peer.greet()
        await peer.transaction()
        await peer.transaction()
        await peer.finish()

    async with scripted_server(script) as server, bounded(), SmtpConnection(server.config()) as conn:
        utf8 = NextMessage(raw_message("m1"), SENDER, ["zoë@example.com"], "m1")
        await conn.send(raw_message("m0"), sender=SENDER, recipients=[ONE], key="m0", then=utf8)
        with pytest.raises(SmtpPermanentError, match="SMTPUTF8"):
            await conn.send(raw_message("m1"), sender=SENDER, recipients=["zoë@example.com"], key="m1")
        await conn.send(raw_message("m2"), sender=SENDER, recipients=[ONE], key="m2")
    [peer] = server.peers
    assert peer.messages == [dot_stuffed(raw_message("m0")), dot_stuffed(raw_message("m2"))]
    assert "zoë".encode() not in peer.received

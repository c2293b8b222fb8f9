"""Sending stored message bytes (what the outbox keeps) with SmtpConnection.send, against real aiosmtpd servers.

Bytes go out unchanged when they are 7-bit or the server offers 8BITMIME; 8-bit bytes to a server without
8BITMIME are re-encoded for 7-bit transport.  ``ready`` is awaited after RCPT and before DATA; if it raises,
the connection is closed and nothing is sent.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailgate.errors import SmtpError
from mailgate.message import Limits, MessageRequest, from_request
from mailgate.smtp import SmtpConnection

from .conftest import ServerFactory
from .servers import FakeTokenSource, Mailbox, OAuthSMTP, RunningServer, ServerController

SENDER = "user@example.com"
RCPT = "rcpt@example.com"

#: 7-bit bytes that a parse and re-serialisation would change: an unfolded header line longer than 78
#: characters (refolded), runs of spaces after "Subject:" (trimmed); and body lines that need SMTP's dot
#: transparency or look like an mbox separator.
SEVEN_BIT = (
    b"From: user@example.com\r\n"
    b"To: rcpt@example.com\r\n"
    b"Subject:   spaced   out\r\n"
    b"Message-ID: <raw-7bit@example.com>\r\n"
    b"X-Long: " + b"word " * 30 + b"end\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"Hello,\r\n"
    b".a line starting with a dot\r\n"
    b"..and one with two\r\n"
    b"From here on, plain text.\r\n"
    b".\r\n"
    b"The end.\r\n"
)
TEXT = "Grüße aus Köln — 日本語のテキスト\n.leading dot\nFrom here\n"
HTML = "<p>Grüße — 日本語</p>\n"


def eight_bit_message() -> bytes:
    """What the outbox stores for a JSON message with non-ASCII text: 8-bit UTF-8 body parts."""
    limits = Limits(default_sender=SENDER, max_bytes=1 << 20)
    request = MessageRequest(sender=None, to=[RCPT], subject="Grüße", text=TEXT, html=HTML)
    raw = from_request(request, limits).raw
    assert not raw.isascii() and b"Content-Transfer-Encoding: 8bit" in raw
    return raw


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@dataclass
class RecordingMailbox(Mailbox):
    """A Mailbox that logs the transaction commands it gets, with the MAIL parameters, and can tell the test's
    event loop when a recipient is accepted."""

    #: (command, argument) in order: ("MAIL", params), ("RCPT", address), ("DATA", ""), ("RSET", "").
    log: list[tuple[str, str]] = field(default_factory=list)
    on_rcpt: Any = None  # (loop, callback) called on the test's loop

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.log.append(("MAIL", " ".join(options)))
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.log.append(("RCPT", address))
        reply = await super().handle_RCPT(server, session, envelope, address, options)
        if self.on_rcpt is not None:
            loop, callback = self.on_rcpt
            loop.call_soon_threadsafe(callback)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.log.append(("DATA", ""))
        return await super().handle_DATA(server, session, envelope)

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.log.append(("RSET", ""))
        return "250 2.0.0 OK"

    def mail_params(self) -> list[set[str]]:
        return [set(arg.split()) for command, arg in self.log if command == "MAIL"]


@pytest.fixture
def seven_bit_server(start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    """A server that does not offer 8BITMIME: aiosmtpd with decode_data=True, which also refuses BODY=
    parameters and answers "500 Error: strict ASCII mode" to 8-bit message content."""

    def factory(self: ServerController) -> OAuthSMTP:
        return OAuthSMTP(self.handler, decode_data=True, **self.SMTP_kwargs)

    monkeypatch.setattr(ServerController, "factory", factory)
    yield start_server(RecordingMailbox())


def connection(server: RunningServer, client_context: ssl.SSLContext) -> SmtpConnection:
    return SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context)


def box(server: RunningServer) -> RecordingMailbox:
    assert isinstance(server.handler, RecordingMailbox)
    return server.handler


async def test_seven_bit_bytes_arrive_unchanged(start_server: ServerFactory, client_context: ssl.SSLContext) -> None:
    server = start_server(RecordingMailbox())
    async with connection(server, client_context) as conn:
        result = await conn.send(SENDER, [RCPT], SEVEN_BIT)
    assert result.accepted == (RCPT,)
    [received] = server.handler.messages
    # aiosmtpd records the content between DATA and the final dot, dot-unstuffed: exactly what was given.
    assert received.content == SEVEN_BIT
    assert received.mail_from == SENDER and received.rcpt_tos == (RCPT,)


async def test_eight_bit_bytes_to_an_8bitmime_server_arrive_unchanged(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    raw = eight_bit_message()
    server = start_server(RecordingMailbox())
    async with connection(server, client_context) as conn:
        await conn.send(SENDER, [RCPT], raw)
    [received] = server.handler.messages
    assert received.content == raw
    [params] = box(server).mail_params()
    assert "BODY=8BITMIME" in params and f"SIZE={len(raw)}" in params


async def test_eight_bit_bytes_to_a_7bit_server_are_reencoded(
    seven_bit_server: RunningServer, client_context: ssl.SSLContext
) -> None:
    raw = eight_bit_message()
    async with connection(seven_bit_server, client_context) as conn:
        # Twice over the same connection: the stored bytes are not changed by the first re-encoding.
        for _ in range(2):
            result = await conn.send(SENDER, [RCPT], raw)
            assert result.accepted == (RCPT,)
    first, second = seven_bit_server.handler.messages
    assert first.content == second.content
    content = first.content
    assert content.isascii()
    assert all(not any(param.startswith("BODY=") for param in params) for params in box(seven_bit_server).mail_params())
    assert f"SIZE={len(content)}" in box(seven_bit_server).mail_params()[0]
    # The same message, decoded: header fields and the text of every part.
    sent, got = parsed(raw), parsed(content)
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        assert got[name] == sent[name], name
    assert str(got["Subject"]) == "Grüße"
    for subtype in ("plain", "html"):
        sent_part, got_part = sent.get_body((subtype,)), got.get_body((subtype,))
        assert sent_part is not None and got_part is not None
        assert got_part.get_content() == sent_part.get_content()
        assert got_part.get_content_charset() == "utf-8"
    assert sent.get_body(("plain",)).get_content().replace("\r\n", "\n") == TEXT  # type: ignore[union-attr]


async def test_seven_bit_bytes_to_a_7bit_server_arrive_unchanged(
    seven_bit_server: RunningServer, client_context: ssl.SSLContext
) -> None:
    async with connection(seven_bit_server, client_context) as conn:
        await conn.send(SENDER, [RCPT], SEVEN_BIT)
    [received] = seven_bit_server.handler.messages
    assert received.content == SEVEN_BIT


async def test_eight_bit_part_without_charset_to_a_7bit_server(
    seven_bit_server: RunningServer, client_context: ssl.SSLContext
) -> None:
    # POST message/rfc822 (outbox.from_raw) stores such a message as it is: a text/plain part with 8-bit
    # content and no charset parameter (or an application/octet-stream part with CTE 8bit, or no MIME at all).
    raw = (
        "From: user@example.com\r\nTo: rcpt@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n"
    ).encode()
    async with connection(seven_bit_server, client_context) as conn:
        try:
            await conn.send(SENDER, [RCPT], raw)
        except SmtpError:
            # Refusing it with a clear error would do too (nothing sent).
            assert seven_bit_server.handler.messages == []
            return
    [received] = seven_bit_server.handler.messages
    assert received.content.isascii()


class DatabaseDown(Exception):
    pass


async def test_ready_that_raises_abandons_the_transaction_and_sends_nothing(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(RecordingMailbox())
    failure = DatabaseDown("the previous result could not be committed")
    async with connection(server, client_context) as conn:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ready.set_exception(failure)
        with pytest.raises(DatabaseDown) as caught:
            await conn.send(SENDER, [RCPT], SEVEN_BIT, ready=ready)
        assert caught.value is failure
        assert box(server).log == [("MAIL", f"SIZE={len(SEVEN_BIT)} BODY=8BITMIME"), ("RCPT", RCPT)]
        assert not conn.is_connected
        assert server.handler.messages == []
        await conn.send(SENDER, ["next@example.com"], SEVEN_BIT)  # on a new connection
    [received] = server.handler.messages
    assert received.rcpt_tos == ("next@example.com",) and received.content == SEVEN_BIT
    assert [command for command, _ in box(server).log] == ["MAIL", "RCPT", "MAIL", "RCPT", "DATA"]
    assert len(server.handler.sasl_commands) == 2


async def test_ready_is_awaited_after_the_recipients_and_before_data(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    server = start_server(RecordingMailbox())
    rcpt_accepted = asyncio.Event()
    box(server).on_rcpt = (asyncio.get_running_loop(), rcpt_accepted.set)
    seen_by_gate: list[list[tuple[str, str]]] = []

    async def gate() -> None:
        # Opens only once the server has the recipient (so it runs during the transaction, not before it)...
        await asyncio.wait_for(rcpt_accepted.wait(), 5)
        await asyncio.sleep(0.05)  # ...and a DATA that did not wait for it would have arrived meanwhile.
        seen_by_gate.append(list(box(server).log))

    async with connection(server, client_context) as conn:
        await conn.send(SENDER, [RCPT], SEVEN_BIT, ready=asyncio.ensure_future(gate()))
    assert [[command for command, _ in log] for log in seen_by_gate] == [["MAIL", "RCPT"]]
    assert [command for command, _ in box(server).log] == ["MAIL", "RCPT", "DATA"]
    assert len(server.handler.messages) == 1

"""build_message with blind recipients only: To is an empty group, Bcc is sent to and never sent out."""

from __future__ import annotations

import ssl

import pytest

from mailgate.errors import ValidationError
from mailgate.smtp import SmtpConnection, build_message

from .conftest import ServerFactory
from .servers import FakeTokenSource

NO_RECIPIENT = {"to": "at least one recipient (to, cc or bcc) is required"}


def test_bcc_only_gets_undisclosed_recipients() -> None:
    message = build_message(sender="a@example.com", to=[], bcc=["b@example.com", "C <c@example.com>"], subject="s",
                            text="t")  # fmt: skip
    assert message["To"] == "undisclosed-recipients:;" and message["To"].addresses == ()
    assert [g.display_name for g in message["To"].groups] == ["undisclosed-recipients"]
    assert message["Bcc"] == "b@example.com, C <c@example.com>" and message["Cc"] is None


def test_cc_only_is_enough() -> None:
    message = build_message(sender="a@example.com", to=[], cc=["c@example.com"], subject="s", text="t")
    assert message["To"] == "undisclosed-recipients:;" and message["Cc"] == "c@example.com"
    assert message["Bcc"] is None


def test_with_to_nothing_changes() -> None:
    message = build_message(sender="a@example.com", to=["b@example.com"], bcc=["c@example.com"], subject="s", text="t")
    assert message["To"] == "b@example.com" and message["Bcc"] == "c@example.com"


@pytest.mark.parametrize(
    ("recipients", "errors"),
    [
        ({}, NO_RECIPIENT),
        ({"to": [], "cc": [], "bcc": []}, NO_RECIPIENT),
        ({"bcc": ["not an address"]}, {"bcc[0]": "must be exactly one valid address, like name@example.com"}),
        ({"bcc": ["ok@example.com", "x@example.com\r\nTo: victim@example.com"]},
         {"bcc[1]": "must not contain line breaks"}),
        ({"cc": ["@example.com"]}, {"cc[0]": "must be exactly one valid address, like name@example.com"}),
    ],
)  # fmt: skip
def test_refusals(recipients: dict[str, list[str]], errors: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as caught:
        build_message(sender="a@example.com", to=recipients.pop("to", []), subject="s", text="t", **recipients)  # type: ignore[arg-type]
    assert caught.value.errors == errors


async def test_sent_to_the_bcc_recipients_without_the_bcc_field(
    start_server: ServerFactory, client_context: ssl.SSLContext
) -> None:
    # What `mailgate send` and the connection test do: the envelope comes from the message's fields.
    server = start_server()
    message = build_message(sender="user@example.com", to=[], bcc=["hidden@example.com"], subject="s", text="t\n")
    async with SmtpConnection(server.config(), FakeTokenSource(), ssl_context=client_context) as conn:
        result = await conn.send_message(message)
    assert result.accepted == ("hidden@example.com",)
    (received,) = server.handler.messages
    assert received.rcpt_tos == ("hidden@example.com",)
    assert b"To: undisclosed-recipients:;\r\n" in received.content
    assert b"hidden" not in received.content and b"Bcc" not in received.content

"""Messages whose recipients are all blind (Bcc only): accepted from JSON and raw, Bcc never stored."""

from __future__ import annotations

import email
import email.policy

import pytest

from mailgate.configure import EmailServerUpdate
from mailgate.errors import ValidationError
from mailgate.message import MessageRequest, from_raw, from_request
from mailgate.message.compose import Limits

from .conftest import Env
from .test_api import MESSAGES

LIMITS = Limits(default_sender="noreply@example.com", max_bytes=10_000_000)


def _parsed(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_json_bcc_only() -> None:
    new = from_request(MessageRequest(sender=None, to=[], bcc=["a@example.com", "B <b@example.com>"], subject="x",
                                      text="y"), LIMITS)  # fmt: skip
    assert new.recipients == ("a@example.com", "b@example.com") and new.sender == "noreply@example.com"
    assert b"\r\nTo: undisclosed-recipients:;\r\n" in new.raw
    assert b"Bcc" not in new.raw and b"a@example.com" not in new.raw and b"b@example.com" not in new.raw
    stored = _parsed(new.raw)
    assert stored["To"].addresses == () and stored["Subject"] == "x" and stored.get_content().strip() == "y"


def test_json_cc_only() -> None:
    new = from_request(MessageRequest(sender=None, to=[], cc=["c@example.com"], subject="x", text="y"), LIMITS)
    assert new.recipients == ("c@example.com",)
    assert _parsed(new.raw)["To"] == "undisclosed-recipients:;" and _parsed(new.raw)["Cc"] == "c@example.com"


@pytest.mark.parametrize(
    ("to", "cc", "bcc", "errors"),
    [
        ([], [], [], {"to": "at least one recipient (to, cc or bcc) is required"}),
        ([], [], ["nope"], {"bcc[0]": "must be exactly one valid address, like name@example.com"}),
        (["a@example.com"], [], ["x@example.com\nTo: y@example.com"], {"bcc[0]": "must not contain line breaks"}),
    ],
)
def test_json_refusals(to: list[str], cc: list[str], bcc: list[str], errors: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as caught:
        from_request(MessageRequest(sender=None, to=to, cc=cc, bcc=bcc, subject="x", text="y"), LIMITS)
    assert caught.value.errors == errors


def test_json_bcc_only_counts_against_the_recipient_limit() -> None:
    limits = Limits(default_sender="noreply@example.com", max_bytes=10_000_000, max_recipients=1, provider="X")
    with pytest.raises(ValidationError) as caught:
        from_request(MessageRequest(sender=None, to=[], bcc=["a@example.com", "b@example.com"], subject="x",
                                    text="y"), limits)  # fmt: skip
    assert "recipients" in caught.value.errors


@pytest.mark.parametrize("to_field", [b"", b"To: undisclosed-recipients:;\r\n", b"To: Undisclosed recipients:;\r\n"])
def test_raw_bcc_only(to_field: bytes) -> None:
    raw = b"From: alice@example.com\r\n" + to_field + b"Bcc: a@example.com, b@example.com\r\nSubject: x\r\n\r\ny\r\n"
    new = from_raw(raw, LIMITS)
    assert new.recipients == ("a@example.com", "b@example.com") and new.sender == "alice@example.com"
    assert b"Bcc" not in new.raw and b"a@example.com" not in new.raw
    assert new.raw.startswith(b"From: alice@example.com\r\n" + to_field + b"Subject: x\r\n")  # To as it came


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        (b"From: a@example.com\r\nTo: undisclosed-recipients:;\r\nSubject: x\r\n\r\ny\r\n",
         {"headers.To": "at least one recipient (To, Cc or Bcc) is required"}),
        (b"From: senders:;\r\nBcc: b@example.com\r\n\r\ny\r\n", {"headers.From": "is not a valid address list"}),
        (b"From: a@example.com\r\nTo: :;\r\nBcc: b@example.com\r\n\r\ny\r\n",
         {"headers.To": "is not a valid address list"}),
    ],
)  # fmt: skip
def test_raw_refusals(raw: bytes, errors: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as caught:
        from_raw(raw, LIMITS)
    assert caught.value.errors == errors


async def test_api_accepts_bcc_only(env: Env) -> None:
    await env.services.config.save_email_server(
        EmailServerUpdate(
            host="smtp.example.com", port=587, security="starttls", authentication="password",
            username="app@example.com", sender="noreply@example.com", password="pw",
        )
    )  # fmt: skip
    r = await env.api.post(MESSAGES, json={"bcc": ["a@example.com"], "subject": "x", "text": "y"})
    assert r.status_code == 202, r.text
    shown = await env.status(r.json()["id"])
    assert shown["recipients"] == ["a@example.com"] and shown["from"] == "noreply@example.com"
    stored = await env.stored_raw(shown["id"])
    assert b"\r\nTo: undisclosed-recipients:;\r\n" in stored and b"a@example.com" not in stored
    r = await env.api.post(MESSAGES, json={"from": "alice@example.com", "subject": "x", "text": "y"})
    assert r.status_code == 422
    assert r.json()["fields"] == {"to": "at least one recipient (to, cc or bcc) is required"}
    assert await env.stored_count() == 1


def test_raw_message_with_a_bad_lower_case_to_names_only_that_field() -> None:
    raw = b"From: a@example.com\r\nto: bad@\r\nSubject: s\r\n\r\nbody\r\n"
    with pytest.raises(ValidationError) as caught:
        from_raw(raw, Limits(default_sender="", max_bytes=1 << 20))
    assert set(caught.value.errors) == {"headers.to"}

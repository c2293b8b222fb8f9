"""from_request makes the same stored bytes as plain ``email.policy.default`` did (see tests/smtp/test_compose_fast)."""

from __future__ import annotations

import base64
import email.policy
import random
from email.message import EmailMessage
from typing import Any

import pytest

from mailgate.errors import ValidationError
from mailgate.outbox import AttachmentRequest, MessageRequest, from_raw, from_request
from mailgate.outbox.compose import Limits

from ..smtp.test_compose_fast import (
    CASES,
    STDLIB,
    assert_same_message,
    random_message,
    reference_mailbox,
    reference_message,
    refuse_stdlib,
)

LIMITS = Limits(default_sender="noreply@example.com", max_bytes=10_000_000)
WIRE = STDLIB.clone(linesep="\r\n")  # how the outbox serialised before


def _request(kwargs: dict[str, Any], **more: Any) -> MessageRequest:
    return MessageRequest(
        sender=kwargs["sender"],
        to=kwargs["to"],
        cc=kwargs.get("cc", ()),
        reply_to=kwargs.get("reply_to"),
        subject=kwargs["subject"],
        text=kwargs["text"],
        html=kwargs.get("html"),
        attachments=[
            AttachmentRequest(a.filename, a.content_type, base64.b64encode(a.data).decode())
            for a in kwargs.get("attachments", ())
        ],
        headers=kwargs.get("headers", {}),
        **more,
    )


@pytest.mark.parametrize("case", CASES)
def test_same_stored_bytes_as_plain_default_policy(case: str) -> None:
    kwargs = {**CASES[case], "headers": {**CASES[case].get("headers", {}), "Message-ID": "<fixed.2@example.com>"}}
    new = from_request(_request(kwargs, bcc=["hidden@example.com"]), LIMITS)
    assert_same_message(new.raw, reference_message(**kwargs).as_bytes(policy=WIRE))
    assert new.message_id == "<fixed.2@example.com>" and new.subject == kwargs["subject"][:255]
    assert new.sender == email.headerregistry.HeaderRegistry()("From", kwargs["sender"]).addresses[0].addr_spec  # type: ignore[attr-defined]
    assert new.recipients[-1] == "hidden@example.com" and b"hidden" not in new.raw
    # A raw message goes through the same header factory: stored as it came (Date and Message-ID were there).
    # (The standard library writes back an empty field as "Subject: ", with the space: as it always did.)
    assert from_raw(new.raw, LIMITS).raw == new.raw.replace(b"\r\nSubject:\r\n", b"\r\nSubject: \r\n")


def test_recipients_in_order_without_duplicates() -> None:
    request = MessageRequest(
        sender="Ana <ana@example.com>",
        to=["B <b@example.com>", "c@example.com"],
        cc=["b@example.com", "Dee <d@example.com>"],
        bcc=["c@example.com", "e@example.com"],
        subject="s",
        text="t",
    )
    new = from_request(request, LIMITS)
    assert new.sender == "ana@example.com"
    assert new.recipients == ("b@example.com", "c@example.com", "d@example.com", "e@example.com")


def test_a_header_section_broken_by_folding_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stdlib folding has produced an empty line inside a header for some long words: never store that."""
    real = EmailMessage.as_bytes

    def broken(self: EmailMessage, *args: object, **kwargs: object) -> bytes:
        return real(self, *args, **kwargs).replace(b"To: ", b"To: x@example.com,\r\n\r\n ", 1)  # type: ignore[arg-type]

    # A display name: not a simple request, which is written without the standard library.
    request = MessageRequest(sender="A <a@example.com>", to=["b@example.com"], subject="s", text="t")
    limits = Limits(default_sender="", max_bytes=1 << 20)
    assert from_request(request, limits).raw.count(b"\r\n\r\n") == 1
    monkeypatch.setattr(EmailMessage, "as_bytes", broken)
    with pytest.raises(ValidationError) as caught:
        from_request(request, limits)
    assert "headers" in caught.value.errors


def test_simple_request_skips_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """A simple request (bare addresses, ASCII subject and text): no parsing, folding or content manager."""
    text = "".join(f"Line {i} of a plain text.\n" for i in range(20))
    kwargs: dict[str, Any] = {"sender": "noreply@example.com", "subject": "Simple 1", "text": text}
    from_request(_request({**kwargs, "to": ["warm.up@example.com"]}), LIMITS)  # the MIME fields' headers: kept
    refuse_stdlib(monkeypatch)
    kwargs.update(to=["skip.1@example.com"], headers={"Message-ID": "<simple.1@example.com>"})
    new = from_request(_request(kwargs, bcc=["skip.2@example.org"]), LIMITS)
    generated = from_request(_request({**kwargs, "to": ["skip.3@example.com"], "headers": {}}), LIMITS)
    monkeypatch.undo()
    assert_same_message(new.raw, reference_message(**kwargs).as_bytes(policy=WIRE))
    assert new.recipients == ("skip.1@example.com", "skip.2@example.org") and new.sender == "noreply@example.com"
    assert generated.message_id.endswith("@example.com>") and generated.recipients == ("skip.3@example.com",)


def test_random_requests_same_as_plain_default_policy() -> None:
    rng = random.Random(5321)
    stored = 0
    for _ in range(250):
        kwargs = random_message(rng)
        kwargs["headers"].pop("Content-Language", None)  # refused by build_message (see its tests)
        bcc = kwargs.pop("bcc")
        if not kwargs["headers"].get("Message-ID", "").isascii():
            with pytest.raises(ValidationError):  # refused: it cannot be written as it is
                from_request(_request(kwargs, bcc=bcc), LIMITS)
            continue
        try:
            found = [reference_mailbox(value) for value in (kwargs["sender"], *kwargs["to"], *kwargs["cc"], *bcc)]
            for value in [kwargs["reply_to"]] if "reply_to" in kwargs else []:
                reference_mailbox(value)
            message = reference_message(**kwargs)
            reference = message.as_bytes(policy=WIRE)
            head = reference.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if sum(1 for line in head if line and line[:1] not in b" \t") != len(message.keys()):
                raise ValueError("a header section broken by the standard library's folding")
        except Exception:  # refused, or the standard library cannot make or write it: from_request refuses too
            with pytest.raises((ValidationError, ValueError, UnicodeError)):
                from_request(_request(kwargs, bcc=bcc), LIMITS)
            continue
        new = from_request(_request(kwargs, bcc=bcc), LIMITS)
        stored += 1
        assert_same_message(new.raw, reference)
        assert new.sender == found[0].addr_spec
        assert new.recipients == tuple(dict.fromkeys(address.addr_spec for address in found[1:]))
        assert new.message_id == str(message["Message-ID"]) and new.subject == kwargs["subject"][:255]
    assert stored > 100

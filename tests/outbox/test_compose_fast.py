"""from_request makes the same stored bytes as plain ``email.policy.default`` did (see tests/smtp/test_compose_fast)."""

from __future__ import annotations

import base64
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest

from mailgate.errors import ValidationError
from mailgate.outbox import AttachmentRequest, MessageRequest, from_raw, from_request
from mailgate.outbox.compose import Limits

from ..smtp.test_compose_fast import CASES, STDLIB, assert_same_message, reference_message

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

    request = MessageRequest(sender="a@example.com", to=["b@example.com"], subject="s", text="t")
    limits = Limits(default_sender="", max_bytes=1 << 20)
    assert from_request(request, limits).raw.count(b"\r\n\r\n") == 1
    monkeypatch.setattr(EmailMessage, "as_bytes", broken)
    with pytest.raises(ValidationError) as caught:
        from_request(request, limits)
    assert "headers" in caught.value.errors

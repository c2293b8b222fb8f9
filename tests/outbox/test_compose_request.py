"""from_request: the envelope of a JSON request, and a header section the standard library folds wrongly."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from mailgate.errors import ValidationError
from mailgate.message import MessageRequest, from_request
from mailgate.message.compose import Limits

LIMITS = Limits(default_sender="noreply@example.com", max_bytes=10_000_000)


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
    assert b"Bcc" not in new.raw and b"e@example.com" not in new.raw


@pytest.mark.parametrize("sender", ["a@example.com", "A <a@example.com>"])
def test_a_header_section_broken_by_folding_is_refused(monkeypatch: pytest.MonkeyPatch, sender: str) -> None:
    """Stdlib folding has produced an empty line inside a header for some long words: never store that."""
    real = EmailMessage.as_bytes

    def broken(self: EmailMessage, *args: object, **kwargs: object) -> bytes:
        return real(self, *args, **kwargs).replace(b"To: ", b"To: x@example.com,\r\n\r\n ", 1)  # type: ignore[arg-type]

    request = MessageRequest(sender=sender, to=["b@example.com"], subject="s", text="t")
    assert from_request(request, LIMITS).raw.count(b"\r\n\r\n") == 1
    monkeypatch.setattr(EmailMessage, "as_bytes", broken)
    with pytest.raises(ValidationError) as caught:
        from_request(request, LIMITS)
    assert caught.value.errors == {"headers": "could not be written as a valid header section"}

"""Attachments are written into the message from their base64 directly: the same bytes as the email package's.

_from_any_request builds a message's attachments empty and puts each one's base64 (re-wrapped, without the
email package's copies) where its placeholder was written.  Each request here is answered that way and the
way it was before (the decoded attachments built into the message by build_message, which the email package
serialises), with the clock, Message-ID and MIME boundaries pinned: the bytes must be equal.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.generator
import email.utils
import os
import random
import re
from datetime import datetime, tzinfo
from email.message import EmailMessage
from typing import Any

import pytest

from mailgate.errors import ValidationError
from mailgate.message import compose
from mailgate.message.compose import AttachmentRequest, Limits, MessageRequest, from_request
from mailgate.smtp import Attachment, build_message
from mailgate.smtp import compose as smtp_compose
from mailgate.smtp.compose import POLICY

LIMITS = Limits(default_sender="alice@sandbox.test", max_bytes=25 * 1024 * 1024, max_recipients=100)
TEXT = "Hello from the benchmark.\n" * 20


def request(**fields: Any) -> MessageRequest:
    """The common request (as the benchmark sends it), with ``fields`` changed."""
    base: dict[str, Any] = {
        "sender": None,
        "to": ["r1@example.com"],
        "cc": [],
        "bcc": [],
        "reply_to": None,
        "subject": "bench 1",
        "text": TEXT,
        "html": None,
        "attachments": [],
        "headers": {},
    }
    return MessageRequest(**{**base, **fields})


class PinnedClock(datetime):
    """``datetime`` whose ``now()`` is :attr:`stamp` (an instance of this class, as build_message expects)."""

    stamp = 1_790_000_000.0

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> PinnedClock:
        return cls.fromtimestamp(cls.stamp, tz)


class Pinned:
    """The clock and Message-IDs of both ways, set by :meth:`set`: the same Date and Message-ID each time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.serial = 0
        monkeypatch.setattr(smtp_compose, "datetime", PinnedClock)
        monkeypatch.setattr(email.utils, "make_msgid", self.make_msgid)
        # The MIME boundaries (of the messages with HTML or attachments) too.
        monkeypatch.setattr(email.generator.Generator, "_make_boundary", classmethod(lambda cls, text=None: "=_b_="))

    def make_msgid(self, idstring: str | None = None, domain: str | None = None) -> str:
        return f"<{self.serial}.4242.{self.serial * 7919}@{domain}>"

    def set(self, stamp: float, serial: int) -> None:
        PinnedClock.stamp = stamp
        self.serial = serial


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> Pinned:
    return Pinned(monkeypatch)


class Boundaries:
    """MIME boundaries numbered in the order they are made (nested multiparts need different ones), from 0
    again at each :meth:`reset`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made = 0
        monkeypatch.setattr(email.generator.Generator, "_make_boundary", classmethod(lambda cls, text=None: self()))

    def __call__(self) -> str:
        self.made += 1
        return f"=_b{self.made}_="

    def reset(self) -> None:
        self.made = 0


@pytest.fixture
def boundaries(pinned: Pinned, monkeypatch: pytest.MonkeyPatch) -> Boundaries:
    return Boundaries(monkeypatch)


def reference(req: MessageRequest, limits: Limits = LIMITS) -> bytes:
    """The message as from_request wrote it before: attachments decoded, built in, serialised."""
    attachments = [
        Attachment(a.filename, a.content_type, base64.b64decode("".join(a.content_base64.split()), validate=True))
        for a in req.attachments
    ]
    message = build_message(
        sender=req.sender or limits.default_sender,
        to=req.to,
        subject=req.subject,
        text=req.text,
        html=req.html,
        cc=req.cc,
        bcc=req.bcc,
        reply_to=req.reply_to,
        attachments=attachments,
        headers=req.headers,
    )
    del message["Bcc"]
    return compose._serialise(message)


def attach(*datas: bytes, wrap: int = 0) -> list[AttachmentRequest]:
    out = []
    for i, data in enumerate(datas):
        text = base64.b64encode(data).decode()
        if wrap:
            text = "\n".join(text[j : j + wrap] for j in range(0, len(text), wrap))
        out.append(AttachmentRequest(f"file-{i}.bin", "application/octet-stream", text))
    return out


# Around the line (57 bytes) and the block (57 * 1024 bytes) the writer works in.
SIZES = [0, 1, 2, 3, 4, 55, 56, 57, 58, 113, 114, 115, 57 * 1024 - 1, 57 * 1024, 57 * 1024 + 1, 3 * 57 * 1024 + 7]


@pytest.mark.parametrize("size", SIZES)
def test_one_attachment_same_bytes(size: int, pinned: Pinned) -> None:
    data = random.Random(size).randbytes(size)
    req = request(attachments=attach(data))
    pinned.set(1_790_000_000.0, 1)
    ours = from_request(req, LIMITS).raw
    pinned.set(1_790_000_000.0, 1)
    assert ours == reference(req)
    part = next(email.message_from_bytes(ours, _class=EmailMessage, policy=POLICY).iter_attachments())
    assert isinstance(part, EmailMessage) and part.get_content() == data


@pytest.mark.parametrize(
    "fields",
    [
        {"html": "<p>hi</p>", "attachments": attach(b"a" * 1000, b"", os.urandom(70_000))},
        {"cc": ["c@example.com"], "bcc": ["d@example.com"], "attachments": attach(b"report\n" * 300, wrap=76)},
        {"text": "mailgate-attachment-" * 5, "attachments": attach(b"x", wrap=3)},  # looks like a placeholder
        {"subject": "Rapport été", "text": "Grüße\n", "attachments": attach(os.urandom(5000), os.urandom(1))},
    ],
    ids=["html and three", "bcc and wrapped base64", "placeholder-like text", "non-ascii"],
)
def test_messages_with_attachments_same_bytes(
    fields: dict[str, Any],
    pinned: Pinned,
    boundaries: Boundaries,
) -> None:
    req = request(**fields)
    pinned.set(1_790_000_000.0, 2)
    ours = from_request(req, LIMITS)
    pinned.set(1_790_000_000.0, 2)
    boundaries.reset()
    assert ours.raw == reference(req)
    assert re.search(rb"mailgate-attachment-[0-9a-f]{32}", ours.raw) is None
    parsed = email.message_from_bytes(ours.raw, _class=EmailMessage, policy=POLICY)
    sent = [part.get_content() for part in parsed.walk() if part.get_content_disposition() == "attachment"]
    assert sent == [base64.b64decode("".join(a.content_base64.split())) for a in req.attachments]


@pytest.mark.parametrize(
    "text",
    ["QQ", "QQ=", "Q===", "QQ==QQ==", "=QQQ", "QQ!=", "QUJD\u00e9", "QUJD-_", "QUJ"],
)
def test_invalid_base64_is_refused_as_before(text: str) -> None:
    with pytest.raises((binascii.Error, ValueError)):
        base64.b64decode("".join(text.split()), validate=True)  # refused before too
    req = request(attachments=[AttachmentRequest("f.bin", "application/octet-stream", text)])
    with pytest.raises(ValidationError) as refused:
        from_request(req, LIMITS)
    assert refused.value.errors == {"attachments[0].content_base64": "is not valid base64"}


@pytest.mark.parametrize("text", ["QQ==", " Q Q = = ", "QUJD\nREVG\r\n", "QUJDREVG", "\tQUJD"])
def test_valid_base64_with_whitespace_is_accepted_as_before(text: str) -> None:
    req = request(attachments=[AttachmentRequest("f.bin", "application/octet-stream", text)])
    raw = from_request(req, LIMITS).raw
    part = next(email.message_from_bytes(raw, _class=EmailMessage, policy=POLICY).iter_attachments())
    assert isinstance(part, EmailMessage)
    assert part.get_content() == base64.b64decode("".join(text.split()), validate=True)


def test_oversized_attachments_are_refused_before_they_are_written() -> None:
    small = Limits(default_sender="alice@sandbox.test", max_bytes=1000)
    req = request(attachments=attach(b"x" * 600, b"y" * 600))
    with pytest.raises(ValidationError) as refused:
        from_request(req, small)
    assert refused.value.http_status == 413 and "1,000" in refused.value.errors["message"]


def test_the_base64_is_written_once() -> None:
    """Building a large attachment takes about three times its JSON size at the peak, not five or more."""
    import tracemalloc

    data = os.urandom(4 * 1024 * 1024)
    req = request(attachments=attach(data))
    size = len(req.attachments[0].content_base64)
    tracemalloc.start()
    try:
        from_request(req, LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The decoded data (3/4), the wrapped base64 (1) and the message (1); the email package's own writing
    # took more than three times the size on top of those.
    assert peak < 3 * size, f"peak {peak:,} for {size:,} bytes of base64"

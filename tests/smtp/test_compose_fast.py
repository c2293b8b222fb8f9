"""build_message with its faster header factory makes the same messages as plain ``email.policy.default``.

:func:`reference_message` repeats build_message's steps with the standard library's own policy (what
build_message did before): both are serialised and compared byte for byte (but for Date and the MIME
boundaries, which differ from run to run), and parsed back and compared field by field.
"""

from __future__ import annotations

import copy
import email
import email.policy
import email.utils
import pickle
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address, AddressHeader, HeaderRegistry, UniqueUnstructuredHeader
from email.message import EmailMessage
from typing import Any, cast

import pytest

from mailgate.smtp import Attachment, build_message, parse_mailbox
from mailgate.smtp.compose import POLICY

STDLIB = email.policy.default

LONG_SUBJECT = "Rechnung für Müller – März: " + " ".join(f"Position {i} geliefert" for i in range(25))

CASES: dict[str, dict[str, Any]] = {
    "plain": {"sender": "noreply@example.com", "to": ["bob@example.com"], "subject": "Hello", "text": "Hi.\n"},
    "non-ascii": {
        "sender": "Ana Núñez <ana@example.com>",
        "to": ["李小龙 <li@example.org>", "Zoë Ærø <zoe@example.net>"],
        "subject": "Grüße aus Köln 🎉",
        "text": "Grüße,\nAna\n",
    },
    "long and folded": {
        "sender": "Reports <reports@example.com>",
        "to": [f"Recipient Number {i} <recipient.{i}@example.com>" for i in range(12)],
        "cc": ["Ünïcödé Pérson <u@example.com>", "c@example.net"],
        "subject": LONG_SUBJECT,
        "text": "word " * 300,  # lines over 78 characters
    },
    "everything": {
        "sender": '"O\'Brien, Pat" <pat@example.com>',
        "to": ['"Dr. Who" <who@example.com>', '"q u"@example.com', "Müller (work) <m@example.com>"],
        "cc": ["carol@example.com"],
        "reply_to": "Help Desk <help@example.com>",
        "subject": "Quarterly report",
        "text": "See attached.\n",
        "html": "<p>See <b>attached</b> – Grüße.</p>",
        "attachments": [
            Attachment("report.pdf", "application/pdf", b"%PDF-1.7 " * 200),
            Attachment("Überblick – Q3 " + "x" * 60 + ".csv", "text/csv", b"a,b\n1,2\n"),
        ],
        "headers": {
            "In-Reply-To": "<abc@example.com>",
            "X-Campaign": "spring – Frühling",
            "List-Unsubscribe": "<https://example.com/unsubscribe?id=" + "0123456789" * 8 + ">",
        },
    },
    "empty subject and text": {"sender": "a@example.com", "to": ["b@example.com"], "subject": "", "text": ""},
}


def _address(value: str) -> Address:
    address: Address = STDLIB.header_factory("To", value).addresses[0]
    return address


def reference_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    cc: Sequence[str] = (),
    reply_to: str | None = None,
    attachments: Sequence[Attachment] = (),
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """build_message's steps with plain ``email.policy.default`` (pass a Message-ID in ``headers``)."""
    message = EmailMessage(policy=STDLIB)
    message["From"] = _address(sender)
    message["To"] = [_address(value) for value in to]
    if cc:
        message["Cc"] = [_address(value) for value in cc]
    if reply_to is not None:
        message["Reply-To"] = _address(reply_to)
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        message.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return message


def normalised(raw: bytes) -> bytes:
    """Without what differs from one run to the next: the Date value and the MIME boundaries."""
    raw = re.sub(rb"(^|\n)Date: [^\r\n]*", rb"\1Date: -", raw)
    return re.sub(rb"={15}\d+==", b"BOUNDARY", raw)


def assert_same_message(new: bytes, reference: bytes) -> None:
    """Byte for byte but for Date and boundaries; parsed back: the same fields, addresses and parts."""
    assert normalised(new) == normalised(reference)
    ours = email.message_from_bytes(new, policy=STDLIB)
    theirs = email.message_from_bytes(reference, policy=STDLIB)
    assert ours.keys() == theirs.keys()
    for name in ours:
        if name == "Date":
            when = email.utils.parsedate_to_datetime(str(ours["Date"]))
            assert when.tzinfo is not None
            assert abs(when - email.utils.parsedate_to_datetime(str(theirs["Date"]))).total_seconds() < 60
            continue
        assert normalised(str(ours[name]).encode()) == normalised(str(theirs[name]).encode()), name
        assert getattr(ours[name], "addresses", None) == getattr(theirs[name], "addresses", None), name
    ours_parts = [p for p in ours.walk() if not p.is_multipart()]
    theirs_parts = [p for p in theirs.walk() if not p.is_multipart()]
    assert [(p.get_content_type(), p.get_filename(), p.get_content()) for p in ours_parts] == [
        (p.get_content_type(), p.get_filename(), p.get_content()) for p in theirs_parts
    ]


@pytest.mark.parametrize("case", CASES)
def test_same_message_as_plain_default_policy(case: str) -> None:
    kwargs = {**CASES[case], "headers": {**CASES[case].get("headers", {}), "Message-ID": "<fixed.1@example.com>"}}
    new = build_message(**kwargs)
    reference = reference_message(**kwargs)
    for policy in (None, email.policy.SMTP, STDLIB.clone(linesep="\r\n"), email.policy.SMTPUTF8):
        assert_same_message(new.as_bytes(policy=policy), reference.as_bytes(policy=policy))
    # Once more: the header objects kept by the factory (sender, recipients, MIME fields) fold the same.
    again = build_message(**kwargs)
    assert_same_message(again.as_bytes(policy=email.policy.SMTP), reference.as_bytes(policy=email.policy.SMTP))


def test_generated_message_id_and_date() -> None:
    message = build_message(sender="Ana Núñez <ana@bücher.example>", to=["b@example.com"], subject="s", text="t")
    assert re.fullmatch(r"<[^<>@\s]+@xn--bcher-kva\.example>", str(message["Message-ID"]))
    parsed = email.message_from_bytes(message.as_bytes(policy=email.policy.SMTP), policy=STDLIB)
    assert abs(email.utils.parsedate_to_datetime(str(parsed["Date"])) - datetime.now(UTC)).total_seconds() < 60
    assert re.fullmatch(rb"Date: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", message.as_bytes().split(b"\n")[3])


def test_line_breaks_are_still_refused() -> None:
    message = build_message(sender="a@example.com", to=["b@example.com"], subject="s", text="t")
    del message["To"]
    for value in ("x\r\nBcc: victim@example.com", "x\nBcc: victim@example.com"):
        with pytest.raises(ValueError, match="linefeed"):
            message["X-Tag"] = value
        with pytest.raises(ValueError, match="linefeed"):
            message["To"] = value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("To", "Ana Núñez <ana@example.com>, bob@example.com"),
        ("To", "undisclosed-recipients:;"),
        ("To", "not an address"),
        ("From", '"O\'Brien, Pat" <pat@example.com>'),
        ("Cc", ", ".join(f"Person {i} <p{i}@example.com>" for i in range(8))),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Disposition", 'attachment; filename="Überblick.pdf"'),
        ("Content-Transfer-Encoding", "base64"),
        ("MIME-Version", "1.0"),
        ("Subject", LONG_SUBJECT),
        ("X-Anything", "Grüße"),
    ],
)
def test_header_factory_makes_the_stdlib_headers(name: str, value: str) -> None:
    ours = POLICY.header_factory(name, value)
    theirs = STDLIB.header_factory(name, value)
    assert str(ours) == str(theirs) and ours.name == theirs.name
    assert type(ours).__bases__[0] is type(theirs).__bases__[0]  # the same registered kind
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    assert getattr(ours, "addresses", None) == getattr(theirs, "addresses", None)
    assert getattr(ours, "params", None) == getattr(theirs, "params", None)
    for policy in (email.policy.SMTP, email.policy.SMTP.clone(max_line_length=40), email.policy.SMTPUTF8):
        assert ours.fold(policy=policy) == theirs.fold(policy=policy)
        assert ours.fold(policy=policy) == theirs.fold(policy=policy)  # a folded form kept, per policy


def test_header_classes_built_once_and_recurring_headers_kept() -> None:
    factory = cast(HeaderRegistry, POLICY.header_factory)
    assert factory["To"] is factory["cc"] and issubclass(factory["To"], AddressHeader)
    assert factory["Subject"] is factory["subject"] and issubclass(factory["Subject"], UniqueUnstructuredHeader)
    assert factory("To", "bob@example.com") is factory("To", "bob@example.com")
    assert factory("To", "bob@example.com") is not factory("to", "bob@example.com")  # the name is kept as given
    assert factory("Subject", "hello") is not factory("Subject", "hello")  # unique per message: not kept


def test_a_new_mapping_empties_the_caches() -> None:
    factory = type(cast(HeaderRegistry, POLICY.header_factory))()
    assert not hasattr(factory("X-Rcpt", "a@example.com"), "addresses")
    factory.map_to_type("X-Rcpt", AddressHeader)  # type: ignore[arg-type]
    assert factory("X-Rcpt", "a@example.com").addresses == (Address(username="a", domain="example.com"),)  # type: ignore[attr-defined]


def test_messages_pickle_and_copy() -> None:
    message = build_message(**CASES["everything"])
    raw = message.as_bytes(policy=email.policy.SMTP)
    for copied in (pickle.loads(pickle.dumps(message)), copy.deepcopy(message)):
        assert copied.as_bytes(policy=email.policy.SMTP) == raw
        copied["X-Added"] = "after the copy"
        assert copied["X-Added"] == "after the copy"


def test_parse_mailbox_answers_the_same_each_time() -> None:
    for _ in range(2):
        assert parse_mailbox("Ana Núñez <ana@example.com>") == _address("Ana Núñez <ana@example.com>")
        for value, refusal in (
            ("a@example.com, b@example.com", "must be exactly one valid address, like name@example.com"),
            ("a@example.com\r\nBcc: x@example.com", "must not contain line breaks"),
            ("  ", "is empty"),
            ("user@localhost", "must be a full address, like name@example.com"),
        ):
            with pytest.raises(ValueError) as caught:
                parse_mailbox(value)
            assert str(caught.value) == refusal

"""build_message with its faster header factory makes the same messages as plain ``email.policy.default``.

:func:`reference_message` repeats build_message's steps with the standard library's own policy (what
build_message did before): both are serialised and compared byte for byte (but for Date and the MIME
boundaries, which differ from run to run), and parsed back and compared field by field.
"""

from __future__ import annotations

import copy
import email
import email._header_value_parser
import email.contentmanager
import email.errors
import email.policy
import email.utils
import pickle
import random
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from email.headerregistry import (
    Address,
    AddressHeader,
    DateHeader,
    HeaderRegistry,
    MessageIDHeader,
    UniqueUnstructuredHeader,
    UnstructuredHeader,
)
from email.message import EmailMessage
from typing import Any, cast

import idna
import pytest

from mailgate.errors import ValidationError
from mailgate.smtp import Attachment, build_message, compose, parse_mailbox
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
    return _ascii_domain(address)


def _ascii_domain(address: Address) -> Address:
    """``address`` with its domain in ASCII, as mailgate writes it (IDNA 2008 A-labels, UTS 46 mapping)."""
    if address.domain.isascii():
        return address
    try:
        domain = idna.encode(address.domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise ValueError(compose.BAD_DOMAIN_NAME.format(address.domain)) from None
    return Address(address.display_name, address.username, domain)


def reference_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
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
    if bcc:
        message["Bcc"] = [_address(value) for value in bcc]
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


# Simple values -------------------------------------------------------------------------------------------------
#
# parse_mailbox, the header factory and build_message take a shorter way for simple values (a bare addr-spec, a
# printable ASCII subject, a Date from a datetime, a <dot-atom@dot-atom> Message-ID, a plain ASCII text body):
# seeded random values, simple and almost simple, get the same answers as from plain email.policy.default.

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
COMMON = "abcdefghijklmnopqrstuvwxyz0123456789+-_"
LDH = "abcdefghijklmnopqrstuvwxyz0123456789-"
# Put in now and then: each makes a value not simple, or is simple but unusual.
ODD = [
    '"', " ", "  ", "\t", "(", ")", "<", ">", "@", ",", ":", ";", "\\", "[", "]", "ü", "é", "李", "\x7f", "\x01",
    "=?", "?=", "..", ".", "=", "?", "'", "+", "\u2028", "\x0b",
]  # fmt: skip
WORDS = [
    "Re:", "Fwd:", "hello", "Hello", "bench", "[tag]", "(x)", "a,b", "x@y.z", '"q"', "100%", "\\", "<>", "ÜBER",
    "=?utf-8?q?x?=", "=?", "?=", "a=?b", "-", "...", "\t", "  ", "x" * 30, "y" * 75,
]  # fmt: skip


def _atom(rng: random.Random, alphabet: str, low: int = 1, high: int = 8) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _spoil(rng: random.Random, value: str, chance: float) -> str:
    if rng.random() >= chance:
        return value
    i = rng.randint(0, len(value))
    return value[:i] + rng.choice(ODD) + value[i:]


def random_local_part(rng: random.Random) -> str:
    alphabet = ATEXT if rng.random() < 0.3 else COMMON
    value = ".".join(_atom(rng, alphabet) for _ in range(rng.choice((1, 1, 1, 2, 3))))
    variant = rng.random()
    if variant < 0.03:
        value = "." + value
    elif variant < 0.06:
        value += "."
    elif variant < 0.09:
        value = f'"{value} x"'
    elif variant < 0.11:
        value = f"=?utf-8?q?{value}?="
    elif variant < 0.14:
        value = value.upper()
    elif variant < 0.17:
        value = f"{value}+{_atom(rng, COMMON)}"
    elif variant < 0.20:
        value = "x" * rng.randint(60, 250)
    return _spoil(rng, value, 0.15)


def random_domain(rng: random.Random) -> str:
    value = ".".join(_atom(rng, LDH, 1, 10) for _ in range(rng.choice((1, 2, 2, 2, 3, 4))))
    variant = rng.random()
    if variant < 0.03:
        value = "bücher." + value
    elif variant < 0.06:
        value += "."
    elif variant < 0.08:
        value = "[192.0.2.1]"
    elif variant < 0.11:
        value = value.upper()
    elif variant < 0.13:
        value = "xn--bcher-kva." + value
    elif variant < 0.15:
        value = value.replace(".", "_", 1)
    elif variant < 0.18:
        value = "a" * rng.randint(60, 250) + "." + value
    return _spoil(rng, value, 0.1)


def random_addr_spec(rng: random.Random) -> str:
    return random_local_part(rng) + rng.choice(["@"] * 30 + ["", "@@", " @", "@ "]) + random_domain(rng)


def random_mailbox(rng: random.Random) -> str:
    addr_spec = random_addr_spec(rng)
    variant = rng.random()
    if variant < 0.7:
        return addr_spec
    if variant < 0.8:
        return f"{_atom(rng, COMMON)} {_atom(rng, COMMON).title()} <{addr_spec}>"
    if variant < 0.84:
        return f'"{_atom(rng, COMMON)}, {_atom(rng, COMMON)}" <{addr_spec}>'
    if variant < 0.87:
        return f"Zoë <{addr_spec}>"
    if variant < 0.89:
        return f"{addr_spec} (comment)"
    if variant < 0.92:
        return f" {addr_spec}"
    if variant < 0.95:
        return f"{addr_spec} "
    if variant < 0.97:
        return f"<{addr_spec}>"
    return f"{addr_spec}, {random_addr_spec(rng)}"


def random_text(rng: random.Random) -> str:
    """A subject: lengths around the 78-character line (less "Subject: "), words with specials, spaces, ..."""
    target = rng.choice([rng.randint(1, 20), rng.randint(55, 85), rng.randint(64, 72), rng.randint(100, 200)])
    words: list[str] = []
    while len(" ".join(words)) < target:
        words.append(rng.choice(WORDS) if rng.random() < 0.3 else _atom(rng, ATEXT + "ABC ", 1, 12).strip() or "w")
    value = " ".join(words)[:target] if rng.random() < 0.5 else " ".join(words)
    variant = rng.random()
    if variant < 0.04:
        value = " " + value
    elif variant < 0.08:
        value += " "
    elif variant < 0.10:
        value = value.replace(" ", "  ", 1)
    elif variant < 0.12:
        value = ""
    return _spoil(rng, value, 0.1)


def random_message_id(rng: random.Random) -> str:
    value = f"<{random_local_part(rng)}@{random_domain(rng)}>"
    variant = rng.random()
    if variant < 0.05:
        value = " " + value
    elif variant < 0.10:
        value += " x"
    elif variant < 0.13:
        value = value[1:]
    elif variant < 0.16:
        value = value.replace("@", "", 1)
    elif variant < 0.30:  # as email.utils.make_msgid makes them
        value = f"<{rng.randint(0, 10**12)}.{rng.randint(1, 99999)}.{rng.randint(0, 10**19)}@{random_domain(rng)}>"
    elif variant < 0.33:
        value = f"<{'x' * rng.randint(40, 80)}@example.com>"
    return value


def random_date(rng: random.Random) -> datetime | str:
    when = datetime(
        rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28),
        rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.choice([0, rng.randint(0, 999999)]),
    )  # fmt: skip
    variant = rng.random()
    if variant < 0.4:
        return when.replace(tzinfo=UTC)
    if variant < 0.55:
        return when  # naive: -0000
    if variant < 0.75:
        return when.replace(tzinfo=timezone(timedelta(minutes=rng.randint(-24 * 60 + 1, 24 * 60 - 1))))
    if variant < 0.8:
        return when.replace(tzinfo=timezone(timedelta(hours=2), "CEST"))
    return email.utils.format_datetime(when.replace(tzinfo=UTC)) if variant < 0.95 else "not a date"


def random_body(rng: random.Random) -> str:
    lines = [_atom(rng, ATEXT + "      ", 0, rng.choice((20, 70, 78))) for _ in range(rng.randint(0, 8))]
    variant = rng.random()
    if variant < 0.1:
        lines.append("z" * rng.choice((77, 78, 79, 80)))
    elif variant < 0.15:
        lines.append("Grüße")
    elif variant < 0.2:
        lines.append("From the start. \x0c\x0b\x1c")
    elif variant < 0.25:
        lines.append("   ")
    end = rng.choice(["\n", "\n", "\r\n", "\r", ""])
    return rng.choice(["\n", "\n", "\r\n", "\r"]).join(lines) + end


#: What str.splitlines splits at; the email package refuses them in header values (a ValueError).
LINE_BREAKS = set("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def reference_mailbox(value: str) -> Address:
    """What parse_mailbox answered before its simple path: plain email.policy.default's parser, the same checks."""
    if LINE_BREAKS & set(value):
        raise ValueError("must not contain line breaks")
    if not value.strip():
        raise ValueError("is empty")
    try:
        header = STDLIB.header_factory("To", value)
    except Exception as exc:
        raise ValueError(f"is not a valid address ({type(exc).__name__})") from exc
    addresses = getattr(header, "addresses", ())
    if len(addresses) == 1 and any(isinstance(d, email.errors.NonASCIILocalPartDefect) for d in header.defects):
        raise ValueError(compose.NON_ASCII_LOCAL_PART)  # mailgate sends addresses in ASCII
    if header.defects or len(addresses) != 1:
        raise ValueError("must be exactly one valid address, like name@example.com")
    address: Address = addresses[0]
    if not address.username or not address.domain or "." not in address.domain.strip("."):
        raise ValueError("must be a full address, like name@example.com")
    return _ascii_domain(address)


def outcome(function: Callable[[], Any]) -> Any:
    """The result, or what was raised."""
    try:
        return function()
    except Exception as exc:
        return ("raised", type(exc), str(exc))


def mailbox_key(found: Any) -> Any:
    if isinstance(found, Address):
        return (found.display_name, found.username, found.domain, found.addr_spec, str(found))
    return found


def test_parse_mailbox_random_same_as_stdlib() -> None:
    rng = random.Random(5322)
    simple = 0
    for _ in range(5000):
        value = random_mailbox(rng)
        expected = mailbox_key(outcome(lambda: reference_mailbox(value)))  # noqa: B023
        assert mailbox_key(outcome(lambda: compose._parse_mailbox.__wrapped__(value))) == expected, value  # noqa: B023
        assert mailbox_key(outcome(lambda: parse_mailbox(value))) == expected, value  # noqa: B023
        simple += compose._simple_address(value) is not None
    assert 1000 < simple < 4000  # both ways taken, often


ADDRESS_FIELDS = ("To", "Cc", "Bcc", "From", "Reply-To", "Sender", "Resent-To")
TEXT_FIELDS = ("Subject", "X-Tag", "Comments")
DATE_FIELDS = ("Date", "Resent-Date")


def random_header(rng: random.Random) -> tuple[str, str, Any]:
    """A kind of field ("address", "text", "date" or "message-id"), a field name of that kind and a value."""
    kind, names = rng.choice(
        (("address", ADDRESS_FIELDS), ("text", TEXT_FIELDS), ("date", DATE_FIELDS), ("message-id", ("Message-ID",)))
    )
    name = rng.choice(names)
    if kind == "address":
        count = rng.choice((1, 1, 1, 1, 2, 3, 6))
        value: Any = ", ".join(random_mailbox(rng) if rng.random() < 0.7 else simple_address(rng) for _ in range(count))
    elif kind == "text":
        value = random_text(rng)
    elif kind == "date":
        value = random_date(rng)
    else:
        value = random_message_id(rng)
    return kind, rng.choice((name, name, name, name.lower(), name.upper())), value


def header_key(header: Any, policies: Sequence[Any]) -> Any:
    """Everything a reader sees of a header object (or what its making raised)."""
    if isinstance(header, tuple):
        return header
    return (
        str(header),
        header.name,
        type(header).__bases__[0],  # the registered kind
        [(type(d), str(d)) for d in header.defects],
        getattr(header, "groups", None),
        getattr(header, "addresses", None),
        getattr(header, "datetime", None),
        [outcome(lambda p=policy: header.fold(policy=p)) for policy in policies],
        header._parse_tree.ppstr(),  # tokens, their types and defects
    )


def test_header_factory_random_same_as_stdlib() -> None:
    rng = random.Random(2822)
    simple: dict[tuple[str, bool], int] = {}
    for _ in range(3000):
        kind, name, value = random_header(rng)
        ours = outcome(lambda: POLICY.header_factory(name, value))  # noqa: B023
        theirs = outcome(lambda: STDLIB.header_factory(name, value))  # noqa: B023
        if isinstance(theirs, tuple):
            assert ours == theirs, (name, value)
            continue
        simple[kind, ours._simple] = simple.get((kind, ours._simple), 0) + 1
        copied = pickle.loads(pickle.dumps(ours))  # before anything made its parse tree
        # The standard policies, a policy that is not an EmailPolicy, and the line lengths around this one.
        fits = len(name) + 2 + len(str(theirs))
        policies = [STDLIB, email.policy.SMTP, email.policy.SMTPUTF8, email.policy.HTTP, email.policy.compat32]
        if fits <= 120:
            policies += [email.policy.SMTP.clone(max_line_length=n) for n in (fits - 1, fits, fits + 1) if n >= 20]
        expected = header_key(theirs, policies)
        assert header_key(ours, policies) == expected, (name, value)
        assert header_key(copied, policies) == expected, (name, value)
        assert header_key(copy.deepcopy(ours), policies) == expected, (name, value)
    for kind in ("address", "text", "date", "message-id"):  # both ways taken, often
        assert simple.get((kind, True), 0) > 150, (kind, simple)
        assert simple.get((kind, False), 0) > 100, (kind, simple)


def simple_address(rng: random.Random) -> str:
    return f"{_atom(rng, COMMON)}@{_atom(rng, LDH)}.{rng.choice(('example', 'com', 'co.uk'))}"


def random_message(rng: random.Random) -> dict[str, Any]:
    simple = rng.random() < 0.5  # half of them with simple addresses only
    address = (lambda: simple_address(rng)) if simple else (lambda: random_mailbox(rng))
    message_id = random_message_id(rng)
    while not compose._MSG_ID.match(message_id.strip()):
        message_id = random_message_id(rng)
    kwargs: dict[str, Any] = {
        "sender": address(),
        "to": [address() for _ in range(rng.choice((1, 1, 2, 3)))],
        "cc": [address() for _ in range(rng.choice((0, 0, 1, 2)))],
        "bcc": [address() for _ in range(rng.choice((0, 0, 1)))],
        "subject": random_text(rng),
        "text": random_body(rng),
        "headers": {"Message-ID": message_id},
    }
    if rng.random() < 0.2:
        kwargs["reply_to"] = address()
    if rng.random() < 0.2:
        kwargs["headers"]["X-Tag"] = random_text(rng)
    if rng.random() < 0.05:
        kwargs["headers"]["Content-Language"] = "de"  # set_content removes it: the content manager's way
    if rng.random() < 0.1:
        kwargs["html"] = "<p>" + kwargs["text"] + "</p>"
    if rng.random() < 0.05:
        kwargs["attachments"] = [Attachment("a.txt", "text/plain", kwargs["text"].encode())]
    return kwargs


def message_key(message: EmailMessage) -> list[Any]:
    return [
        (name, normalised(str(value).encode()), [type(d) for d in value.defects], getattr(value, "addresses", None))
        for name, value in message.items()
        if name != "Date"
    ]


def test_build_message_random_same_as_stdlib() -> None:
    rng = random.Random(2045)
    built = 0
    for _ in range(600):
        kwargs = random_message(rng)
        errors = {}
        for label, value in (
            ("sender", kwargs["sender"]),
            *((f"{field}[{i}]", item) for field in ("to", "cc", "bcc") for i, item in enumerate(kwargs[field])),
            *((("reply_to", kwargs["reply_to"]),) if "reply_to" in kwargs else ()),
        ):
            error = outcome(lambda v=value: reference_mailbox(v))
            if isinstance(error, tuple):
                errors[label] = error[2]
        ours = outcome(lambda: build_message(**kwargs))  # noqa: B023
        headers_in: dict[str, str] = kwargs.get("headers", {})  # type: ignore[assignment]
        texts = [str(kwargs["subject"]), *headers_in, *headers_in.values()]
        texts += [a.filename for a in kwargs.get("attachments", ())]  # type: ignore[attr-defined]
        if errors or any(LINE_BREAKS & set(text) for text in texts):  # the stdlib: ValueError; ours: refused
            assert isinstance(ours, tuple) and ours[1] is ValidationError, kwargs
            continue
        theirs = outcome(lambda: reference_message(**kwargs))  # noqa: B023
        if isinstance(theirs, tuple):
            assert ours == theirs, kwargs
            continue
        headers: dict[str, str] = kwargs.get("headers", {})  # type: ignore[assignment]
        if not headers.get("Message-ID", "").isascii() or "Content-Language" in headers:
            # build_message refuses these: the standard library would fail to serialise a non-ASCII
            # Message-ID, and drop a content field when it sets the body.
            assert isinstance(ours, tuple) and ours[1] is ValidationError, kwargs
            continue
        built += 1
        for policy in (email.policy.SMTP, None):
            ours_raw = outcome(lambda m=ours, p=policy: m.as_bytes(policy=p))
            theirs_raw = outcome(lambda m=theirs, p=policy: m.as_bytes(policy=p))
            if isinstance(theirs_raw, tuple):  # e.g. a non-ASCII Message-ID: the standard library cannot write it
                assert ours_raw == theirs_raw, kwargs
            elif policy is None:
                assert normalised(ours_raw) == normalised(theirs_raw), kwargs
            else:
                assert_same_message(ours_raw, theirs_raw)
        assert message_key(ours) == message_key(theirs)
    assert built > 300


def _refuse(*args: object, **kwargs: object) -> Any:
    raise AssertionError("the standard library's parser, folder or content manager was called")


def refuse_stdlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the standard library's parsing, folding and text content setting fail, for the kinds made simple."""
    for kind in (UnstructuredHeader, AddressHeader, DateHeader, MessageIDHeader):
        monkeypatch.setattr(kind, "parse", classmethod(_refuse))
    monkeypatch.setattr(email._header_value_parser, "_refold_parse_tree", _refuse)
    monkeypatch.setattr(email.contentmanager.raw_data_manager, "set_content", _refuse)


def test_simple_values_skip_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    compose._parse_mailbox.cache_clear()
    cast(Any, POLICY.header_factory)._kept.cache_clear()
    refuse_stdlib(monkeypatch)
    assert parse_mailbox("Fast.Path+tag@Mail.Example.COM") == Address(
        username="Fast.Path+tag", domain="Mail.Example.COM"
    )
    now = datetime.now(UTC)
    simple = [
        ("Subject", 'Re: [tag] fast path 12 (x), 100% "done" <a@b.c> \\ ;:'),
        ("To", "f.1@example.com, F.2+x@Example.org, f!#$%&'*+/=^_`{|}~?-@a-1.b2.example"),
        ("from", "fast@example.com"),
        ("Date", now),
        ("Message-ID", "<170.1.2@fast.example>"),
        ("X-Tag", "x" * (78 - len("X-Tag: "))),  # 78 characters: fits
    ]
    headers = [POLICY.header_factory(name, value) for name, value in simple]
    for header in headers:
        assert header._simple and "_parse_tree" not in vars(header)
        assert header.fold(policy=email.policy.SMTP).endswith("\r\n")
    long = POLICY.header_factory("Subject", "x" * 60 + " and more words beyond the end of the line")
    assert long._simple  # made without the parser; folded by the standard library
    with pytest.raises(AssertionError, match="standard library"):
        long.fold(policy=email.policy.SMTP)
    with pytest.raises(AssertionError, match="standard library"):
        headers[-1].fold(policy=email.policy.SMTP.clone(max_line_length=77))
    not_simple = [
        ("Subject", "Grüße"),
        ("Subject", " leading space"),
        ("Subject", "trailing space "),
        ("Subject", "an =?utf-8?q?encoded?= word"),
        ("Subject", "a\ttab"),
        ("Subject", ""),
        ("To", "Fast Path <fast@example.com>"),
        ("To", "fast@example.com,fast.2@example.com"),
        ("To", '"fast path"@example.com'),
        ("To", "fast@localhost"),
        ("To", "fast@bücher.example"),
        ("To", "fast..path@example.com"),
        ("To", "=?utf-8?q?fast?=@example.com"),
        ("To", "undisclosed-recipients:;"),
        ("Date", "Mon, 20 Nov 2023 10:00:00 +0000"),
        ("Message-ID", "<fast@[127.0.0.1]>"),
        ("Message-ID", " <fast@example.com>"),
        ("Content-Type", "text/plain"),
    ]
    for name, value in not_simple[:-1]:
        with pytest.raises(AssertionError, match="standard library"):
            POLICY.header_factory(name, value)
    assert not POLICY.header_factory(*not_simple[-1])._simple
    for value in ("Fast Path <fast@example.com>", "fast@localhost", "fast.@example.com", " fast@example.com"):
        with pytest.raises(ValueError, match="AssertionError"):  # the parser was called, and refused
            parse_mailbox(value)
    monkeypatch.undo()
    for (name, value), header in zip(simple, headers, strict=True):
        policies = [email.policy.SMTP, email.policy.SMTP.clone(max_line_length=40)]
        assert header_key(header, policies) == header_key(STDLIB.header_factory(name, value), policies)


def test_plain_text_body_skips_the_content_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs: dict[str, Any] = {"sender": "a@example.com", "to": ["b@example.com"], "subject": "s"}
    monkeypatch.setattr(email.contentmanager.raw_data_manager, "set_content", _refuse)
    text = "line 1\r\nline 2\rline 3\n\n" + "x" * 78
    message = build_message(**kwargs, text=text)
    assert message.get_content_type() == "text/plain" and message["Content-Transfer-Encoding"] == "7bit"
    for other in ({"text": "Grüße"}, {"text": "x" * 79}):
        with pytest.raises(AssertionError, match="content manager"):
            build_message(**{**kwargs, "text": "t", **other})
    monkeypatch.undo()
    kwargs["headers"] = {"Message-ID": "<fixed.3@example.com>"}
    assert_same_message(
        build_message(**kwargs, text=text).as_bytes(policy=email.policy.SMTP),
        reference_message(**kwargs, text=text).as_bytes(policy=email.policy.SMTP),
    )

"""from_request writes the bytes of a simple request directly (simple_message_bytes): the same answer as building.

Each request is answered both ways: by from_request (directly when the request is simple) and by
_from_any_request (building the message with build_message and serialising it, as from_request always did),
with the clock and the Message-ID pinned for both.  The answers (the NewMessage, or the error raised) must be
equal, the bytes byte for byte.
"""

from __future__ import annotations

import base64
import contextlib
import email.generator
import email.utils
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from email.message import EmailMessage
from typing import Any

import pytest

from mailgate.errors import ValidationError
from mailgate.outbox import compose
from mailgate.outbox.checks import check_request
from mailgate.outbox.compose import AttachmentRequest, Limits, MessageRequest, NewMessage, from_request
from mailgate.smtp import compose as smtp_compose

from ..smtp.test_compose_fast import random_body, random_mailbox, random_text

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


class Spy:
    """simple_message_bytes as from_request calls it, remembering whether it wrote the message (not None)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = compose.simple_message_bytes
        self.direct: list[bool] = []
        monkeypatch.setattr(compose, "simple_message_bytes", self)

    def __call__(self, **kwargs: Any) -> tuple[bytes, str] | None:
        written = self.real(**kwargs)
        self.direct.append(written is not None)
        return written


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> Pinned:
    return Pinned(monkeypatch)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    return Spy(monkeypatch)


def answer(build: Callable[[MessageRequest, Limits], NewMessage], req: MessageRequest, limits: Limits) -> Any:
    """All of a NewMessage, or all of the error raised."""
    try:
        new = build(req, limits)
    except ValidationError as exc:
        return ("raised", type(exc), exc.errors, exc.message, exc.hint, exc.http_status)
    except Exception as exc:  # e.g. a subject with U+000B: the standard library's ValueError (not a simple case)
        return ("raised", type(exc), str(exc))
    return (new.sender, new.recipients, new.message_id, new.subject, new.raw)


def _checked_then_built(req: MessageRequest, limits: Limits) -> NewMessage:
    """What from_request does without the direct way: the request checked (counts, control characters),
    then its message built."""
    check_request(req, limits)
    return compose._from_any_request(req, limits)


def both_ways(spy: Spy, req: MessageRequest, limits: Limits = LIMITS) -> bool:
    """Assert from_request answers as _from_any_request; whether it wrote the message directly."""
    spy.direct.clear()
    ours = answer(from_request, req, limits)
    assert len(spy.direct) <= 1
    theirs = answer(_checked_then_built, req, limits)
    assert ours == theirs, req
    return bool(spy.direct and spy.direct[0])


B64 = base64.b64encode(b"attached\n").decode()
LONG_DOMAIN = "d" * 60 + ".example"  # From fits on a line, Message-ID does not
LABEL_64 = "d" * 64 + ".io"  # not IDNA-encodable: the Message-ID's domain is mailgate.invalid
TWO_RECIPIENTS = Limits(default_sender="alice@sandbox.test", max_bytes=1 << 20, max_recipients=2, provider="Gmail")

# name: (request fields, limits or None for LIMITS, whether the message is written directly)
EDGE_CASES: dict[str, tuple[dict[str, Any], Limits | None, bool]] = {
    "common": ({}, None, True),
    "explicit sender": ({"sender": "bob.smith+news@mail.example.org"}, None, True),
    "upper-case address": ({"sender": "BOB@EXAMPLE.ORG", "to": ["R@Example.COM"]}, None, True),
    "atext address": ({"to": ["a!#$%&'*+/=^?_`{|}~-b@example.com"]}, None, True),  # "=?" is not simple
    "empty subject": ({"subject": ""}, None, True),
    "subject line of 78": ({"subject": "s" * 69}, None, True),
    "subject line of 79": ({"subject": "s" * 70}, None, False),
    "subject with words on 79": ({"subject": "word " * 13 + "words"}, None, False),
    "subject leading space": ({"subject": " hi"}, None, False),
    "subject trailing space": ({"subject": "hi "}, None, False),
    "subject double space": ({"subject": "a  b"}, None, True),
    "subject encoded word": ({"subject": "=?utf-8?q?hi?="}, None, False),
    "subject =? inside": ({"subject": "what =? that"}, None, False),
    "subject non-ASCII": ({"subject": "Grüße"}, None, False),
    "subject tab": ({"subject": "a\tb"}, None, False),
    "subject only space": ({"subject": " "}, None, False),
    "empty text": ({"text": ""}, None, True),
    "text of one line break": ({"text": "\n"}, None, True),
    "text of empty lines": ({"text": "\n\n\r\n\r"}, None, True),
    "text without final line break": ({"text": "no end"}, None, True),
    "CR line ends": ({"text": "a\rb\r"}, None, True),
    "CRLF line ends": ({"text": "a\r\nb\r\n"}, None, True),
    "mixed line ends": ({"text": "a\r\n\rb\n\nc\r\r\n"}, None, True),
    "line of 78": ({"text": "x" * 78 + "\n" + "y" * 78}, None, True),
    "line of 79": ({"text": "x" * 78 + "\n" + "y" * 79 + "\n"}, None, False),
    "line of 78 with CRLF": ({"text": "x" * 78 + "\r\n"}, None, True),
    "leading dots": ({"text": ".\n..\n.x\n...\r\n."}, None, True),
    "From at line start": ({"text": "From here\nFrom: x\n>From y\n"}, None, True),
    "other control characters": ({"text": "a\x0cb\x0bc\x1cd\x1def\x7f\t\n"}, None, True),  # NUL: refused
    "trailing spaces": ({"text": "a  \n \n\t\n   "}, None, True),
    "non-ASCII text": ({"text": "Grüße\n"}, None, False),
    "line separator U+2028": ({"text": "a\u2028b\n"}, None, False),
    "html": ({"html": "<p>Hello</p>"}, None, False),
    "empty html": ({"html": ""}, None, False),
    "attachment": ({"attachments": [AttachmentRequest("a.txt", "text/plain", B64)]}, None, False),
    "several recipients with duplicates": (
        {
            "to": ["a@example.com", "b@example.com", "a@example.com"],
            "cc": ["b@example.com", "c@example.com"],
            "bcc": ["a@example.com", "d@example.com", "d@example.com"],
        },
        None,
        True,
    ),
    "cc only": ({"to": [], "cc": ["c@example.com", "d@example.com"]}, None, True),
    "bcc only": ({"to": [], "bcc": ["b@example.com"]}, None, True),
    "long bcc": ({"bcc": [f"hidden.recipient.{i}@example.com" for i in range(30)]}, None, True),
    "reply_to": ({"reply_to": "help@example.com"}, None, True),
    "reply_to with name": ({"reply_to": "Help <help@example.com>"}, None, False),
    "sender with name": ({"sender": "Alice <alice@example.com>"}, None, False),
    "to with name": ({"to": ["Bob <bob@example.com>"]}, None, False),
    "cc with name": ({"cc": ["Carol <carol@example.com>"]}, None, False),
    "bcc with name": ({"bcc": ["Dee <dee@example.com>"]}, None, False),
    "angle brackets": ({"to": ["<bob@example.com>"]}, None, False),
    "quoted local part": ({"to": ['"b b"@example.com']}, None, False),
    "=? in address": ({"to": ["a=?b@example.com"]}, None, False),
    "=? in sender": ({"sender": "a=?b?=@example.com"}, None, False),
    "non-ASCII local part": ({"to": ["bö@example.com"]}, None, False),
    "non-ASCII domain": ({"sender": "a@bücher.example"}, None, False),
    "address with comment": ({"to": ["bob@example.com (Bob)"]}, None, False),
    "address with space": ({"to": [" bob@example.com"]}, None, False),
    "To line over 78": ({"to": [f"recipient{i}@example.com" for i in range(4)]}, None, False),
    "To line of 78": ({"to": ["x" * 62 + "@example.com"]}, None, True),
    "To line of 79": ({"to": ["x" * 63 + "@example.com"]}, None, False),
    "Cc line of 79": ({"cc": ["x" * 63 + "@example.com"]}, None, False),
    "Reply-To line of 79": ({"reply_to": "x" * 57 + "@example.com"}, None, False),
    "Message-ID over 78": ({"sender": "a@" + LONG_DOMAIN}, None, False),
    "Message-ID domain not IDNA": ({"sender": "a@" + LABEL_64}, None, True),
    "extra header": ({"headers": {"X-Tag": "spring"}}, None, True),
    "In-Reply-To and References": (
        {"headers": {"In-Reply-To": "<abc@example.com>", "References": "<x@example.com> <abc@example.com>"}},
        None,
        True,
    ),
    "extra headers differing in case": ({"headers": {"X-Tag": "1", "x-tag": "2", "KEYWORDS": "a, b"}}, None, True),
    "extra header line of 78": ({"headers": {"X-Tag": "v" * 71}}, None, True),
    "extra header line of 79": ({"headers": {"X-Tag": "v" * 72}}, None, False),
    "extra header Message-ID": ({"headers": {"Message-ID": "<fixed.1@example.com>"}}, None, False),
    "extra header message-id lower case": ({"headers": {"message-id": "<fixed.1@example.com>"}}, None, False),
    "extra header structured": ({"headers": {"Resent-To": "x@example.com"}}, None, False),
    "extra header date": ({"headers": {"Resent-Date": "Fri, 27 Nov 2026 23:04:11 +0000"}}, None, False),
    "extra header non-ASCII": ({"headers": {"X-Tag": "Frühling"}}, None, False),
    "extra header trailing space": ({"headers": {"X-Tag": "v "}}, None, False),
    "extra header empty": ({"headers": {"X-Tag": ""}}, None, False),
    "extra header encoded word": ({"headers": {"X-Tag": "=?utf-8?q?x?="}}, None, False),
    "extra header name ending in LF": ({"headers": {"X-Tag\n": "v"}}, None, False),  # _FIELD_NAME's "$" lets it by
    # Refused, both ways, with the same errors.
    "extra header reserved": ({"headers": {"Subject": "x"}}, None, False),
    "extra header content field": ({"headers": {"Content-Language": "en"}}, None, False),
    "extra header bad name": ({"headers": {"X Tag": "x"}}, None, False),
    "extra header line break": ({"headers": {"X-Tag": "a\r\nBcc: x@example.com"}}, None, False),
    "no recipient": ({"to": []}, None, False),
    "bad address": ({"to": ["not an address"]}, None, False),
    "bad cc and bcc": ({"cc": ["x@"], "bcc": ["user@localhost"]}, None, False),
    "bad reply_to": ({"reply_to": ""}, None, False),
    "line break in address": ({"to": ["a@example.com\r\nBcc: x@example.com"]}, None, False),
    "CR in subject": ({"subject": "a\rb"}, None, False),
    "LF in subject": ({"subject": "a\nBcc: x@example.com"}, None, False),
    "empty sender": ({"sender": ""}, None, False),
    "no default sender": ({}, Limits(default_sender="", max_bytes=1 << 20), False),
    "bad default sender": ({}, Limits(default_sender="nobody", max_bytes=1 << 20), False),
    "too many recipients": ({"to": ["a@example.com", "b@example.com"], "cc": ["c@example.com"]}, TWO_RECIPIENTS, False),
    "many duplicates": ({"to": ["a@example.com"] * 2, "bcc": ["a@example.com"] * 3}, TWO_RECIPIENTS, True),
    "very many duplicates": ({"to": ["a@example.com"] * 150}, None, False),  # To over 78
    "too large": ({}, Limits(default_sender="alice@sandbox.test", max_bytes=700, provider="Gmail"), True),
    "exactly as large": ({}, Limits(default_sender="alice@sandbox.test", max_bytes=780), True),
    "too many and too large": (
        {"to": ["r0@example.com", "r1@example.com"], "cc": ["r2@example.com", "r3@example.com"]},
        Limits(default_sender="alice@sandbox.test", max_bytes=-1, max_recipients=2),
        False,
    ),
}


@pytest.mark.parametrize("case", EDGE_CASES)
def test_edge_cases_same_both_ways(case: str, pinned: Pinned, spy: Spy) -> None:
    fields, limits, direct = EDGE_CASES[case]
    for stamp, serial in ((1_790_000_000.0, 1), (0.0, 123456789012), (253_402_300_799.0, 7)):
        pinned.set(stamp, serial)
        assert both_ways(spy, request(**fields), limits or LIMITS) is direct


def test_exactly_as_large_is_accepted(pinned: Pinned) -> None:
    pinned.set(1_790_000_000.0, 1)
    new = from_request(request(), LIMITS)
    assert len(new.raw) == 780  # the size of "exactly as large" above
    assert from_request(request(), EDGE_CASES["exactly as large"][1] or LIMITS).raw == new.raw


def test_common_case_bytes(pinned: Pinned) -> None:
    """The bytes written, spelled out: what build_message's message serialises to (compared above)."""
    pinned.set(1_790_000_000.0, 1)
    new = from_request(request(bcc=["hidden@example.com"], reply_to="help@example.com"), LIMITS)
    assert new.raw == (
        b"From: alice@sandbox.test\r\nTo: r1@example.com\r\nReply-To: help@example.com\r\nSubject: bench 1\r\n"
        b"Date: Mon, 21 Sep 2026 14:13:20 +0000\r\nMessage-ID: <1.4242.7919@sandbox.test>\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n'
        b"\r\n" + TEXT.replace("\n", "\r\n").encode()
    )
    assert new.recipients == ("r1@example.com", "hidden@example.com")
    assert (new.sender, new.message_id, new.subject) == ("alice@sandbox.test", "<1.4242.7919@sandbox.test>", "bench 1")


def test_long_subject_is_cut_in_the_answer(pinned: Pinned, spy: Spy) -> None:
    for subject in ("x" * 300, " ".join(["word"] * 80)):
        pinned.set(1_790_000_000.0, 3)
        assert not both_ways(spy, request(subject=subject))
        assert len(from_request(request(subject=subject), LIMITS).subject) == 255


# Seeded random requests, simple and almost simple -------------------------------------------------------------

SIMPLE_LOCAL = "abcdefghijklmnopqrstuvwxyz0123456789"


def simple_address(rng: random.Random, local_length: int = 0) -> str:
    local = "".join(rng.choice(SIMPLE_LOCAL) for _ in range(local_length or rng.randint(1, 12)))
    if rng.random() < 0.2:
        local += rng.choice([".x", "+tag", "-y", "_z", ".a.b"])
    domain = rng.choice(["example.com", "example.org", "mail.example.net", "x.io", "sandbox.test"])
    return f"{local}@{domain}"


def random_address(rng: random.Random, pool: list[str], odd: bool) -> str:
    """A simple address (a new one, or one of ``pool``); if ``odd``, now and then another."""
    variant = rng.random()
    if variant < 0.25 and pool:
        return rng.choice(pool)  # a duplicate
    if variant < 0.35 and odd:
        return random_mailbox(rng)  # now and then not simple, or not valid
    if variant < 0.38 and odd:
        return rng.choice(["Bob <bob@example.com>", '"q u"@example.com', "zoë@example.com", "a=?b@example.com"])
    if variant < 0.42:
        return simple_address(rng, rng.randint(40, 70))  # lines around the 78 columns
    address = simple_address(rng)
    pool.append(address)
    return address


def random_subject(rng: random.Random, odd: bool) -> str:
    variant = rng.random() if odd else rng.random() * 0.6
    if variant < 0.35:
        return f"bench {rng.randint(0, 10**6)}"
    if variant < 0.55:  # printable ASCII, its line around 78 columns ("Subject: " is 9)
        words = " ".join(
            "".join(rng.choice(SIMPLE_LOCAL + "!?:.,[]()") for _ in range(rng.randint(1, 9))) for _ in range(20)
        )
        return words[: rng.randint(60, 75)].strip() or "x"
    if variant < 0.6:
        return ""
    if variant < 0.65:
        return rng.choice(["Grüße", "hi ", " hi", "=?utf-8?q?x?=", "a =? b", "tab\there", "a\rb", "x" * 300])
    return random_text(rng)  # specials, spaces at either end, encoded words, non-ASCII, ...


def random_plain_text(rng: random.Random, odd: bool) -> str:
    variant = rng.random()
    if variant < 0.3:
        return TEXT
    if variant < 0.6 and odd:
        return random_body(rng)  # lines of 77 to 80, CR/LF/CRLF, no final line break, non-ASCII, ...
    lines = []
    for _ in range(rng.randint(0, 10)):
        kind = rng.random()
        if kind < 0.15:
            lines.append("." * rng.randint(1, 3) + "dot")
        elif kind < 0.25:
            lines.append("From " + "x" * rng.randint(0, 10))
        elif kind < 0.4:
            lines.append("w" * rng.choice((76, 77, 78, 78, 79, 80)))
        elif kind < 0.5:
            lines.append("trailing  " + " " * rng.randint(0, 3))
        elif kind < 0.53 and odd:
            lines.append("naïve")
        else:
            lines.append(" ".join("word" for _ in range(rng.randint(0, 12))))
    ends = ["\n", "\r\n", "\r"]
    return "".join(line + rng.choice(ends) for line in lines) + rng.choice(["", "", "last", "\n"])


def random_headers(rng: random.Random, odd: bool) -> dict[str, str]:
    if rng.random() < 0.6:
        return {}
    headers: dict[str, str] = {}
    for _ in range(rng.randint(1, 3)):
        name, value = rng.choice(
            [  # simple ones first
                ("X-Tag", f"tag-{rng.randint(0, 999)}"),
                ("x-campaign", "spring " * rng.randint(1, 12)),
                ("In-Reply-To", f"<{rng.randint(0, 10**9)}@example.com>"),
                ("References", f"<{rng.randint(0, 10**9)}@example.com> <b@example.com>"),
                ("List-Unsubscribe", "<https://example.com/u?id=" + "0" * rng.randint(10, 50) + ">"),
                ("X-Tag", random_text(rng)),
                ("Message-ID", f"<fixed.{rng.randint(0, 999)}@example.com>"),
                ("Resent-To", "x@example.com"),
                ("X-Tag", "Frühling"),
                ("Content-Language", "en"),
                ("Bad Name", "x"),
            ][: None if odd else 5]
        )
        headers[name] = value.strip() if rng.random() < 0.8 or not odd else value
    return headers


def random_request(rng: random.Random) -> tuple[MessageRequest, Limits]:
    """Half of them simple but for lines over 78 columns; the other half not simple in any field, now and then."""
    odd = rng.random() < 0.5
    pool: list[str] = []
    counts = [rng.choice((0, 1, 1, 1, 1, 2, 3)), rng.choice((0, 0, 0, 1, 2)), rng.choice((0, 0, 0, 1, 3))]
    to, cc, bcc = ([random_address(rng, pool, odd) for _ in range(count)] for count in counts)
    fields: dict[str, Any] = {
        "sender": None if rng.random() < 0.5 else random_address(rng, [], odd),
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "reply_to": None if rng.random() < 0.8 else random_address(rng, pool, odd),
        "subject": random_subject(rng, odd),
        "text": random_plain_text(rng, odd),
        "headers": random_headers(rng, odd),
    }
    if odd and rng.random() < 0.1:
        fields["html"] = "<p>hi</p>"
    if odd and rng.random() < 0.1:
        fields["attachments"] = [AttachmentRequest("a.txt", "text/plain", B64)]
    limits = LIMITS
    if rng.random() < 0.1:
        limits = Limits(default_sender="alice@sandbox.test", max_bytes=rng.randint(500, 1500), max_recipients=3)
    return request(**fields), limits


def test_random_requests_same_both_ways(pinned: Pinned, spy: Spy) -> None:
    rng = random.Random(20251127)
    taken = {True: 0, False: 0}
    for _ in range(3000):
        req, limits = random_request(rng)
        pinned.set(rng.uniform(0, 4 * 10**9), rng.randint(0, 10**20))
        taken[both_ways(spy, req, limits)] += 1
    assert taken[True] > 600 and taken[False] > 1500, taken  # both ways, often (748 and 2252)


# The direct way is taken for the simple request, not for any other ---------------------------------------------


def test_simple_request_builds_no_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**kwargs: Any) -> Any:
        raise AssertionError("build_message called")

    monkeypatch.setattr(compose, "build_message", refuse)
    monkeypatch.setattr(compose, "_serialise", refuse)
    for i in range(3):
        new = from_request(request(to=[f"r{i}@example.com"], subject=f"bench {i}"), LIMITS)
        assert new.recipients == (f"r{i}@example.com",) and new.subject == f"bench {i}"
    new = from_request(request(**EDGE_CASES["several recipients with duplicates"][0], reply_to="h@x.io"), LIMITS)
    assert new.recipients == ("a@example.com", "b@example.com", "c@example.com", "d@example.com")
    with pytest.raises(AssertionError, match="build_message called"):
        from_request(request(subject="Grüße"), LIMITS)


def test_not_simple_requests_build_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kind of request that is not simple goes to build_message (asserted case by case above too)."""
    built: list[bool] = []
    real = compose.build_message

    def counting(**kwargs: Any) -> Any:
        built.append(True)
        return real(**kwargs)

    monkeypatch.setattr(compose, "build_message", counting)
    for case, (fields, limits, direct) in EDGE_CASES.items():
        built.clear()
        with contextlib.suppress(ValidationError):
            from_request(request(**fields), limits or LIMITS)
        assert built == ([] if direct or refused_before_building(fields, limits) else [True]), case


def refused_before_building(fields: dict[str, Any], limits: Limits | None) -> bool:
    """Whether check_request refuses the request (counts, control characters) before either way is tried."""
    try:
        check_request(request(**fields), limits or LIMITS)
    except ValidationError:
        return True
    return False


def test_real_clock_and_message_id(spy: Spy) -> None:
    """Unpinned: the same bytes but for the Date and Message-ID values, which are as build_message makes them."""
    for req in (request(), request(sender="ana@xn--bcher-kva.example", cc=["c@example.com"])):
        new, old = from_request(req, LIMITS), compose._from_any_request(req, LIMITS)
        assert spy.direct[-1]

        def normalised(raw: bytes) -> bytes:
            return re.sub(
                rb"\r\nMessage-ID: <\d+\.\d+\.\d+@", b"\r\nMessage-ID: <-@", re.sub(rb"\r\nDate: [^\r]+", b"", raw)
            )

        assert normalised(new.raw) == normalised(old.raw)
        assert re.fullmatch(r"<\d+\.\d+\.\d+@" + re.escape(new.sender.split("@")[1]) + ">", new.message_id)
        assert f"\r\nMessage-ID: {new.message_id}\r\n".encode() in new.raw
        date = re.search(rb"\r\nDate: ([^\r]+)\r\n", new.raw)
        assert date is not None
        when = email.utils.parsedate_to_datetime(date[1].decode())
        assert abs((when - datetime.now(UTC)).total_seconds()) < 60 and date[1].endswith(b" +0000")


# Refusals, as before -------------------------------------------------------------------------------------------


AGAIN = "Correct the fields named and try again."


def refusal(req: MessageRequest, limits: Limits = LIMITS) -> tuple[type[ValidationError], dict[str, str], str]:
    with pytest.raises(ValidationError) as caught:
        from_request(req, limits)
    return type(caught.value), caught.value.errors, caught.value.hint


def test_refusals_as_before(pinned: Pinned) -> None:
    pinned.set(1_790_000_000.0, 1)
    assert refusal(request(to=[])) == (
        ValidationError,
        {"to": "at least one recipient (to, cc or bcc) is required"},
        AGAIN,
    )
    assert refusal(request(to=["not an address"])) == (
        ValidationError,
        {"to[0]": "must be exactly one valid address, like name@example.com"},
        AGAIN,
    )
    assert refusal(request(subject="a\r\nBcc: x@example.com")) == (
        ValidationError,
        {"subject": "must not contain line breaks"},
        AGAIN,
    )
    assert refusal(request(sender=None), Limits(default_sender="", max_bytes=1 << 20)) == (
        ValidationError,
        {"from": "is required: no sender is configured on the Email server page"},
        AGAIN,
    )
    assert refusal(request(to=["a@example.com", "b@example.com", "c@example.com"]), TWO_RECIPIENTS) == (
        ValidationError,
        {"recipients": "3 recipients (to, cc and bcc together); Gmail accepts at most 2 per message"},
        "Split the message into several messages.",
    )
    kind, errors, hint = refusal(request(), Limits(default_sender="alice@sandbox.test", max_bytes=700))
    assert kind is compose.MessageTooLargeError
    assert errors == {"message": "is 780 bytes; the limit is 700 bytes"}
    assert hint == "Send smaller attachments, or a link to the file instead."


def test_a_header_section_broken_by_folding_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check of _serialise, on a request that is not simple (a simple one is not serialised by the stdlib)."""
    real = EmailMessage.as_bytes

    def broken(self: EmailMessage, *args: Any, **kwargs: Any) -> bytes:
        return real(self, *args, **kwargs).replace(b"To: ", b"To: x@example.com,\r\n\r\n ", 1)

    limits = Limits(default_sender="", max_bytes=1 << 20)
    simple = request(sender="a@example.com", subject="s", text="t")
    built = request(sender="A <a@example.com>", subject="s", text="t")
    monkeypatch.setattr(EmailMessage, "as_bytes", broken)
    assert from_request(simple, limits).raw.count(b"\r\n\r\n") == 1  # written directly
    with pytest.raises(ValidationError) as caught:
        from_request(built, limits)
    assert caught.value.errors == {"headers": "could not be written as a valid header section"}

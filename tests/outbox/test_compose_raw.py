"""A raw message (``POST`` with ``Content-Type: message/rfc822``): its header section is parsed and written
again, its body kept as it came (line ends made CRLF), not parsed and written again by the email package.

Each message here is answered both ways, by from_raw and by _from_parsed_raw (the whole message parsed and
serialised, as from_raw did before; still used when the header section does not end at the first empty
line as the parser sees it).  The answers must be equal, but for the MIME bodies the email package rewrote.
"""

from __future__ import annotations

import base64
import os
import tracemalloc
from typing import Any

import pytest

from mailgate.errors import ValidationError
from mailgate.message import compose
from mailgate.message.compose import Limits, from_raw

LIMITS = Limits(default_sender="ana@example.com", max_bytes=30 * 1024 * 1024)
HEAD = (
    "From: Ana <ana@example.com>\r\nTo: bob@example.com\r\nSubject: hi\r\n"
    "Date: Sat, 28 Nov 2026 11:00:00 +0000\r\nMessage-ID: <x.1@example.com>\r\n"
)
ATTACHED = base64.encodebytes(os.urandom(3000)).decode().replace("\n", "\r\n")
MULTIPART = HEAD + (
    'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XYZ"\r\n\r\npreamble\r\n'
    "--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
    "--XYZ\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
    'Content-Disposition: attachment; filename="r.pdf"\r\n\r\n' + ATTACHED + "--XYZ--\r\nepilogue\r\n"
)
SAME = {
    "crlf": HEAD + "\r\nhello\r\nworld\r\n",
    "lf": (HEAD + "\r\nhello\r\nworld\r\n").replace("\r\n", "\n"),
    "mixed line ends": HEAD + "\r\nhello\nworld\r\nthree\rfour\r\n",
    "multipart": MULTIPART,
    "multipart, lf": MULTIPART.replace("\r\n", "\n"),
    "8bit": HEAD + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße, ça va?\r\n",
    "folded field": HEAD.replace("Subject: hi\r\n", "Subject: a long subject\r\n continued\r\n") + "\r\nbody\r\n",
    "bcc removed": HEAD + "Bcc: secret@example.com\r\n\r\nbody\r\n",
    "no date nor message-id": "From: ana@example.com\r\nTo: bob@example.com\r\n\r\nbody\r\n",
    "a line that is not a field": HEAD + "this is not a field\r\n\r\nbody\r\n",
    "empty body": HEAD + "\r\n",
    "no final line end": HEAD + "\r\nhello",
    "empty lines at the end": HEAD + "\r\nhello   \r\n\r\n\r\n",
    "no header": "\r\n\r\nbody\r\n",
    "bad address": HEAD.replace("To: bob@example.com", "To: bob@") + "\r\nbody\r\n",
}


def answer(build: Any, raw: bytes) -> Any:
    try:
        new = build(raw, LIMITS)
    except ValidationError as exc:
        return ("raised", exc.errors)
    return (new.sender, new.recipients, new.message_id, new.subject, new.raw)


@pytest.mark.parametrize("name", SAME)
def test_same_answer_as_parsing_the_whole_message(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compose.email.utils, "make_msgid", lambda domain=None: f"<fixed@{domain}>")
    monkeypatch.setattr(compose.email.utils, "formatdate", lambda **kw: "Sat, 28 Nov 2026 12:00:00 -0000")
    raw = SAME[name].encode()
    ours = answer(from_raw, raw)
    assert ours == answer(compose._from_parsed_raw, raw)
    if ours[0] != "raised":
        assert b"\n" not in ours[-1].replace(b"\r\n", b"") and b"\r" not in ours[-1].replace(b"\r\n", b"")


# What the email package rewrote in a MIME body, kept as the client sent it now.
KEPT = {
    # It put an empty line between the end of a nested multipart and the outer boundary.
    "nested multipart": HEAD + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="A"\r\n\r\n'
    '--A\r\nContent-Type: multipart/alternative; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
    "--B\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--B--\r\n--A--\r\n",
    # It rewrote a long filename in RFC 2231's encoding (filename*0*=...), which some clients do not read.
    "long part field": HEAD + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XYZ"\r\n\r\n'
    '--XYZ\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="' + "a" * 90 + '.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\nQUJD\r\n--XYZ--\r\n",
    # It added the closing boundary.
    "no closing boundary": HEAD + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XYZ"\r\n\r\n'
    "--XYZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
}


@pytest.mark.parametrize("name", KEPT)
def test_a_mime_body_is_kept_as_sent(name: str) -> None:
    raw = KEPT[name].encode()
    new = from_raw(raw, LIMITS)
    assert new.raw == raw
    assert new.raw != compose._from_parsed_raw(raw, LIMITS).raw


def test_a_large_message_is_not_copied_over_and_over() -> None:
    attached = base64.encodebytes(os.urandom(6 * 1024 * 1024)).replace(b"\n", b"\r\n")
    raw = MULTIPART.split("preamble")[0].encode() + b"--XYZ\r\nContent-Type: application/pdf\r\n"
    raw += b"Content-Transfer-Encoding: base64\r\n\r\n" + attached + b"--XYZ--\r\n"
    for body in (raw, raw.replace(b"\r\n", b"\n")):
        tracemalloc.start()
        try:
            new = from_raw(body, LIMITS)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert new.raw == raw
        # The message written (1), and with LF line ends their conversion (2 more); parsing and writing the
        # whole message took eight times its size.
        assert peak < (1.5 if body == raw else 3.5) * len(raw), f"peak {peak:,} for {len(raw):,} bytes"


def test_each_address_field_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """from_raw checks the addresses parsed with their field, and takes the sender from there: From used to be
    parsed three times and each recipient once more (the parser's work is most of what composing costs)."""
    factory = type(compose.POLICY.header_factory)
    parse = factory.__call__
    seen: list[tuple[str, str]] = []

    def counted(self: Any, name: str, value: Any) -> Any:
        seen.append((name, str(value)))
        return parse(self, name, value)

    monkeypatch.setattr(factory, "__call__", counted)
    tag = os.urandom(6).hex()  # addresses no cache has seen
    head = f"From: Ana <ana-{tag}@example.com>\r\nTo: bob-{tag}@example.com, Cy <cy-{tag}@example.com>\r\n"
    message = from_raw(f"{head}Subject: hi\r\n\r\nhello\r\n".encode(), LIMITS)
    assert message.sender == f"ana-{tag}@example.com"
    assert message.recipients == (f"bob-{tag}@example.com", f"cy-{tag}@example.com")
    assert [name for name, value in seen if tag in value] == ["From", "To"]


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ("Subject: one\r\nsubject: two\r\n", "headers.subject"),  # names are case-insensitive
        ("Message-ID: <a@example.com>\r\nMessage-ID: <b@example.com>\r\n", "headers.Message-ID"),
        ("Reply-To: <<not an address>>\r\n", "headers.Reply-To"),
        ("Received: from a by b; Sun, 06 Dec 2026 05:00:00 +0000\r\n" * 2, None),  # any number of trace fields
        ("X-Tag: one\r\nX-Tag: two\r\n", None),
    ],
)
def test_fields_are_checked_as_the_standard_librarys_header_classes_say(fields: str, refused: str | None) -> None:
    """The counts allowed (a header class's max_count) and the syntax of structured fields, for every field of
    every message: the classes are looked up once per name, the verdicts are the standard library's."""
    body = f"From: ana@example.com\r\nTo: bob@example.com\r\n{fields}\r\nHello.\r\n".encode()
    for _ in range(2):  # the second time from the classes looked up the first time
        if refused is None:
            assert from_raw(body, LIMITS).recipients == ("bob@example.com",)
        else:
            with pytest.raises(ValidationError) as caught:
                from_raw(body, LIMITS)
            assert refused in caught.value.errors, caught.value.errors

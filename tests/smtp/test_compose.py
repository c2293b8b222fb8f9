"""build_message: structure, headers, and validation of everything that ends up in a header."""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from mailgate.errors import ValidationError
from mailgate.smtp import Attachment, build_message, parse_mailbox


def test_text_message_headers() -> None:
    msg = build_message(
        sender="Mailgate <noreply@example.com>",
        to=["a@example.com", "Bob Example <bob@example.org>"],
        cc=["c@example.net"],
        reply_to="help@example.com",
        subject="Invoice 42 – ready",
        text="Hello\n",
        headers={"X-Campaign": "spring", "In-Reply-To": "<abc@example.com>"},
    )
    assert msg["From"] == "Mailgate <noreply@example.com>"
    assert msg["To"] == "a@example.com, Bob Example <bob@example.org>"
    assert msg["Cc"] == "c@example.net" and msg["Reply-To"] == "help@example.com"
    assert msg["Subject"] == "Invoice 42 – ready"
    assert msg["Message-ID"].endswith("@example.com>")
    assert email.utils.parsedate_to_datetime(msg["Date"]).tzinfo is not None
    assert msg["X-Campaign"] == "spring" and msg["In-Reply-To"] == "<abc@example.com>"
    assert msg.get_content_type() == "text/plain" and msg.get_content() == "Hello\n"
    # It survives a round trip through bytes (what goes over SMTP).
    parsed = email.message_from_bytes(msg.as_bytes(policy=email.policy.SMTP), policy=email.policy.default)
    assert parsed["Subject"] == "Invoice 42 – ready"


def test_html_and_attachments() -> None:
    msg = build_message(
        sender="noreply@example.com",
        to=["a@example.com"],
        subject="Report",
        text="See the report.",
        html="<p>See the <b>report</b>.</p>",
        attachments=[
            Attachment("report.pdf", "application/pdf", b"%PDF-1.7 ..."),
            Attachment("data.csv", "text/csv", b"a,b\n1,2\n"),
        ],
    )
    assert msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(preferencelist=("html",))
    assert body is not None and "<b>report</b>" in body.get_content()
    files = {part.get_filename(): part for part in msg.iter_attachments()}
    assert set(files) == {"report.pdf", "data.csv"}
    assert files["report.pdf"].get_content() == b"%PDF-1.7 ..."
    assert files["data.csv"].get_content_type() == "text/csv"


def test_message_id_may_be_given() -> None:
    msg = build_message(sender="a@example.com", to=["b@example.com"], subject="s", text="t",
                        headers={"Message-ID": "<outbox-1@example.com>"})  # fmt: skip
    assert msg.get_all("Message-ID") == ["<outbox-1@example.com>"]


def test_attachment_repr_hides_the_data() -> None:
    assert "secret-bytes" not in repr(Attachment("a.txt", "text/plain", b"secret-bytes"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"subject": "Hi\nthere"}, "subject"),
        ({"to": ["a@example.com\r\nBcc: victim@example.com"]}, "to[0]"),
        ({"to": ["not an address"]}, "to[0]"),
        ({"to": ["a@example.com, b@example.com"]}, "to[0]"),
        ({"to": ["@example.com"]}, "to[0]"),
        ({"to": ["user@localhost"]}, "to[0]"),
        ({"to": []}, "to"),
        ({"sender": "noreply"}, "sender"),
        ({"sender": "Evil <a@example.com>\nBcc: x@example.com"}, "sender"),
        ({"cc": ["ok@example.com", "bad@"]}, "cc[1]"),
        ({"reply_to": "x\r\n@example.com"}, "reply_to"),
        ({"headers": {"X-Tag": "a\r\nBcc: victim@example.com"}}, "headers.X-Tag"),
        ({"headers": {"Bad Name": "v"}}, "headers.Bad Name"),
        ({"headers": {"X-Tag\n": "v"}}, "headers.X-Tag\n"),  # would be written as "X-Tag\n: v"
        # The other line breaks of str.splitlines: the email package raises ValueError for them (an API 500).
        ({"subject": "a\vb"}, "subject"),
        ({"subject": "a\u2028b"}, "subject"),
        ({"subject": "a\x85b"}, "subject"),
        ({"headers": {"X-Tag": "a\fb"}}, "headers.X-Tag"),
        ({"to": ["a@example.com\u2029"]}, "to[0]"),
        ({"attachments": [Attachment("a\x1c.txt", "text/plain", b"")]}, "attachments[0].filename"),
        ({"headers": {"Bcc": "victim@example.com"}}, "headers.Bcc"),
        ({"headers": {"Message-ID": "no-brackets"}}, "headers.Message-ID"),
        ({"headers": {"Message-ID": "<ünique@example.com>"}}, "headers.Message-ID"),  # would not serialise
        ({"headers": {"Content-Language": "de"}}, "headers.Content-Language"),  # set_content would drop it
        ({"attachments": [Attachment("a\r\n.txt", "text/plain", b"")]}, "attachments[0].filename"),
        ({"attachments": [Attachment("a.txt", "text plain", b"")]}, "attachments[0].content_type"),
    ],
)
def test_validation(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"sender": "noreply@example.com", "to": ["a@example.com"], "subject": "s", "text": "t"}
    args.update(kwargs)
    with pytest.raises(ValidationError) as caught:
        build_message(**args)  # type: ignore[arg-type]
    assert field in caught.value.errors
    assert caught.value.to_dict()["fields"] == caught.value.errors


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        build_message(sender="nope", to=["also nope"], subject="a\nb", text="t")
    assert set(caught.value.errors) == {"sender", "to[0]", "subject"}


def test_parse_mailbox() -> None:
    address = parse_mailbox("Ana Núñez <ana@example.com>")
    assert (address.display_name, address.username, address.domain) == ("Ana Núñez", "ana", "example.com")
    with pytest.raises(ValueError, match="line breaks"):
        parse_mailbox("a@example.com\n")


@pytest.mark.parametrize(
    ("value", "display_name", "username", "domain"),
    [
        ("user@bücher.de", "", "user", "xn--bcher-kva.de"),
        ("Jörg Müller <Jorg@BÜCHER.de>", "Jörg Müller", "Jorg", "xn--bcher-kva.de"),
        # IDNA 2008 (as registries and browsers): not strasse.de, another domain, as Python's "idna" codec has it.
        ("info@straße.de", "", "info", "xn--strae-oqa.de"),
        ("a@例え.テスト", "", "a", "xn--r8jz45g.xn--zckzah"),
        ("user@xn--bcher-kva.de", "", "user", "xn--bcher-kva.de"),
    ],
)
def test_an_internationalised_domain_goes_in_ascii(value: str, display_name: str, username: str, domain: str) -> None:
    address = parse_mailbox(value)
    assert (address.display_name, address.username, address.domain) == (display_name, username, domain)


def test_internationalised_domains_in_the_message_and_its_header() -> None:
    message = build_message(
        sender="Ana <ana@bücher.de>", to=["Jörg <jorg@straße.de>"], cc=["c@例え.テスト"], subject="s", text="t"
    )
    raw = message.as_bytes()
    assert b"From: Ana <ana@xn--bcher-kva.de>" in raw
    assert b"To: =?utf-8?q?J=C3=B6rg?= <jorg@xn--strae-oqa.de>" in raw
    assert b"Cc: c@xn--r8jz45g.xn--zckzah" in raw
    assert b"@xn--bcher-kva.de>" in message["Message-ID"].encode()
    assert raw.isascii()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("jörg@example.com", "outside ASCII before the @"),
        ("user@-bücher.de", "not a valid internationalised domain name"),
        ("user@bü☃cher.de", "not a valid internationalised domain name"),
    ],
)
def test_addresses_that_cannot_go_in_ascii_are_refused(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_mailbox(value)
    with pytest.raises(ValidationError) as refused:
        build_message(sender="a@example.com", to=[value], subject="s", text="t")
    assert says in refused.value.errors["to[0]"]


def test_generated_message_id_and_date() -> None:
    message = build_message(sender="Ana Núñez <ana@bücher.example>", to=["b@example.com"], subject="s", text="t")
    assert re.fullmatch(r"<[^<>@\s]+@xn--bcher-kva\.example>", str(message["Message-ID"]))
    assert re.search(rb"\r\nDate: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000\r\n", message.as_bytes())

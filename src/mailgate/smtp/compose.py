"""Building a valid message from plain parameters (used by the API, the outbox and ``mailgate send``).

Header syntax is RFC 5322; addresses are parsed with the standard library's RFC 5322 parser
(``email.headerregistry``).  Every problem found is reported at once in a ValidationError.
"""

from __future__ import annotations

import email.headerregistry
import email.message
import email.policy
import email.utils
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import ValidationError

__all__ = ["Attachment", "build_message", "parse_mailbox"]

# RFC 5322 s3.6.8: a field name is printable US-ASCII except ":".
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")
# RFC 2045 s5.1 type/subtype tokens.
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$")
# Headers built from the parameters; setting them through ``headers`` would contradict or duplicate them.
_RESERVED = {
    "from", "to", "cc", "bcc", "reply-to", "subject", "date", "sender",
    "mime-version", "content-type", "content-transfer-encoding", "content-disposition",
}  # fmt: skip
_MSG_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")


@dataclass(frozen=True)
class Attachment:
    """A file to attach: its name as the recipient sees it, its MIME type, and its bytes."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)


def _has_line_break(value: str) -> bool:
    return "\r" in value or "\n" in value


def parse_mailbox(value: str) -> email.headerregistry.Address:
    """One address (``a@example.com`` or ``Name <a@example.com>``), or ValueError saying what is wrong."""
    if _has_line_break(value):
        raise ValueError("must not contain line breaks")
    if not value.strip():
        raise ValueError("is empty")
    try:
        header = email.policy.default.header_factory("To", value)
    except Exception as exc:  # the parser raises assorted errors on garbage
        raise ValueError(f"is not a valid address ({type(exc).__name__})") from exc
    addresses: tuple[email.headerregistry.Address, ...] = getattr(header, "addresses", ())
    if header.defects or len(addresses) != 1:
        raise ValueError("must be exactly one valid address, like name@example.com")
    address = addresses[0]
    if not address.username or not address.domain or "." not in address.domain.strip("."):
        raise ValueError("must be a full address, like name@example.com")
    return address


def _message_id_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "mailgate.invalid"


def build_message(
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
) -> email.message.EmailMessage:
    """An EmailMessage with Date and Message-ID set, a text (and optional HTML) body and attachments.

    ``headers`` adds other header fields (e.g. ``In-Reply-To``, ``List-Unsubscribe``) and may set
    ``Message-ID`` (the outbox keeps one per message so that retries do not look like new messages).
    Raises ValidationError mapping field names (``to[1]``, ``headers.X-Tag``, ...) to what is wrong.
    """
    errors: dict[str, str] = {}

    def mailbox(name: str, value: str) -> email.headerregistry.Address | None:
        try:
            return parse_mailbox(value)
        except ValueError as exc:
            errors[name] = str(exc)
            return None

    from_address = mailbox("sender", sender)
    to_addresses = [mailbox(f"to[{i}]", value) for i, value in enumerate(to)]
    if not to:
        errors["to"] = "at least one recipient is required"
    cc_addresses = [mailbox(f"cc[{i}]", value) for i, value in enumerate(cc)]
    reply_address = mailbox("reply_to", reply_to) if reply_to is not None else None
    if _has_line_break(subject):
        errors["subject"] = "must not contain line breaks"
    extra = dict(headers or {})
    for name, value in extra.items():
        if not _FIELD_NAME.match(name):
            errors[f"headers.{name}"] = "is not a valid header name"
        elif name.lower() in _RESERVED:
            errors[f"headers.{name}"] = "is set from its own parameter"
        elif _has_line_break(value):
            errors[f"headers.{name}"] = "must not contain line breaks"
        elif name.lower() == "message-id" and not _MSG_ID.match(value.strip()):
            errors[f"headers.{name}"] = "must look like <unique@domain>"
    for i, attachment in enumerate(attachments):
        if not attachment.filename.strip() or _has_line_break(attachment.filename):
            errors[f"attachments[{i}].filename"] = "must be a non-empty name without line breaks"
        if not _CONTENT_TYPE.match(attachment.content_type):
            errors[f"attachments[{i}].content_type"] = "must be a MIME type like application/pdf"
    if errors:
        raise ValidationError(errors)
    assert from_address is not None

    message = email.message.EmailMessage()
    message["From"] = from_address
    message["To"] = [a for a in to_addresses if a is not None]
    if cc_addresses:
        message["Cc"] = [a for a in cc_addresses if a is not None]
    if reply_address is not None:
        message["Reply-To"] = reply_address
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    if not any(name.lower() == "message-id" for name in extra):
        # RFC 5322 s3.6.4: unique, with the sender's domain on the right-hand side.
        message["Message-ID"] = email.utils.make_msgid(domain=_message_id_domain(from_address.domain))
    for name, value in extra.items():
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        message.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return message

"""Turning an API request (JSON fields or a raw RFC 5322 message) into a message ready to queue.

Everything is checked before anything is stored; every problem found is reported at once, by field name.

Every JSON request is checked (:mod:`.checks`), built by :func:`mailgate.smtp.build_message` and serialised by
the standard library.
"""

from __future__ import annotations

import binascii
import email
import email.utils
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

from ..errors import ValidationError
from ..smtp.compose import POLICY, Attachment, build_message, check_address, parse_mailbox
from .checks import check_raw, check_request, duplicate_errors, field_errors, recipient_limit, recipients_error

__all__ = [
    "AttachmentRequest",
    "Limits",
    "MessageRequest",
    "MessageTooLargeError",
    "NewMessage",
    "from_raw",
    "from_request",
]

# Serialise with CRLF line ends, as the message goes on the wire (RFC 5322 s2.1): POLICY is email.policy.SMTP.
_WIRE = POLICY


class MessageTooLargeError(ValidationError):
    """The message is over the configured size limit."""

    http_status = 413
    code = "message_too_large"


@dataclass(frozen=True)
class AttachmentRequest:
    filename: str
    content_type: str
    content_base64: str = field(repr=False)


@dataclass(frozen=True)
class MessageRequest:
    """The JSON fields of ``POST /v2/email/messages``, already shaped (types checked) by the web layer."""

    sender: str | None
    to: Sequence[str]
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    reply_to: str | None = None
    subject: str = ""
    text: str = ""
    html: str | None = None
    attachments: Sequence[AttachmentRequest] = ()
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NewMessage:
    """A checked message: envelope, Message-ID and the bytes to send."""

    sender: str
    recipients: tuple[str, ...]
    message_id: str
    subject: str
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class Limits:
    """What the request is checked against: the configured sender and size, the provider's recipients."""

    default_sender: str
    max_bytes: int
    max_recipients: int = 0
    provider: str = ""


def _limit_errors(recipients: Sequence[str], size: int, limits: Limits) -> None:
    if len(recipients) > recipient_limit(limits):
        raise recipients_error(len(recipients), limits)
    if size > limits.max_bytes:
        raise MessageTooLargeError(
            {"message": f"is {size:,} bytes; the limit is {limits.max_bytes:,} bytes"},
            hint="Send smaller attachments, or a link to the file instead.",
        )


def _unique(addresses: Sequence[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for address in addresses:
        seen.setdefault(address, None)
    return tuple(seen)


def _serialise(message: EmailMessage) -> bytes:
    """The message's bytes, checked to have every header field in the header section.

    The standard library's folding can, for some very long words, emit an empty line inside a header: the
    fields after it would end up in the body.  Refuse such a message rather than store it.
    """
    raw = message.as_bytes(policy=_WIRE)
    end = raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[:end]  # not split(): that would copy the body too
    fields = sum(1 for line in head.split(b"\r\n") if line and line[:1] not in (b" ", b"\t"))
    if fields != len(message.keys()):
        raise ValidationError(
            {"headers": "could not be written as a valid header section"},
            hint="Shorten very long names or words without spaces in the addresses, subject or headers.",
        )
    return raw


_WHITESPACE = re.compile(r"\s")
#: What the email package puts on a line of base64 (policy.max_line_length 78 // 4 * 3 bytes: 76 characters).
_LINE_BYTES = 57
_LINE_CHARS = _LINE_BYTES // 3 * 4
_BLOCK_LINES = 1024


def _decode_base64(text: str) -> bytes:
    """``text`` decoded as base64 (whitespace ignored); binascii.Error or ValueError when it is not base64."""
    if _WHITESPACE.search(text) is not None:
        text = "".join(text.split())
    # An ASCII str is read in place (base64.b64decode would copy it to bytes first).
    return binascii.a2b_base64(text, strict_mode=True)


def _wrapped_base64(data: bytes) -> bytearray:
    """``data`` in base64 as the email package writes an attachment's body (lines of 76 characters, each
    ending in CRLF), written into one buffer of the right size."""
    lines, rest = divmod(len(data), _LINE_BYTES)
    size = lines * (_LINE_CHARS + 2) + ((rest + 2) // 3 * 4 + 2 if rest else 0)  # each line and its CRLF
    out = bytearray(size)
    at = 0
    block = _LINE_BYTES * _BLOCK_LINES
    for start in range(0, len(data), block):
        encoded = binascii.b2a_base64(data[start : start + block], newline=False)
        lines_of_block = b"\r\n".join([encoded[i : i + _LINE_CHARS] for i in range(0, len(encoded), _LINE_CHARS)])
        lines_of_block += b"\r\n"
        out[at : at + len(lines_of_block)] = lines_of_block
        at += len(lines_of_block)
    assert at == size
    return out


def _serialise_with(message: EmailMessage, encoded: Sequence[bytearray]) -> bytes:
    """_serialise for a message whose attachments (each part with an attachment disposition, in order) were
    built empty: each one's body is written from ``encoded`` (_wrapped_base64), in the place a unique
    placeholder took in the written message."""
    parts = [part for part in message.walk() if part.get_content_disposition() == "attachment"]
    if len(parts) != len(encoded):
        raise AssertionError(f"{len(parts)} attachment parts for {len(encoded)} attachments")
    placeholders: list[bytes] = []
    for part in parts:
        placeholder = f"mailgate-attachment-{secrets.token_hex(16)}"
        part.set_payload(placeholder)
        placeholders.append(placeholder.encode())
    raw = _serialise(message)
    pieces: list[bytes | bytearray] = []
    at = 0
    for mark, body in zip(placeholders, encoded, strict=True):
        found = raw.find(mark, at)
        if found < 0 or raw.find(mark, found + len(mark)) >= 0:
            raise AssertionError("an attachment's placeholder is not in the written message once")
        pieces += [raw[at:found], body]
        at = found + len(mark)
    pieces.append(raw[at:])
    return b"".join(pieces)


def from_request(request: MessageRequest, limits: Limits) -> NewMessage:
    """Build and check the message of a JSON request.  Raises ValidationError naming each bad field."""
    check_request(request, limits)
    return _from_any_request(request, limits)


def _from_any_request(request: MessageRequest, limits: Limits) -> NewMessage:
    """Any request: its message built by build_message (with every check) and serialised."""
    errors: dict[str, str] = {}
    sender = request.sender if request.sender is not None else limits.default_sender
    if not sender:
        errors["from"] = "is required: no sender is configured on the Email server page"
    # Each attachment is built with no data, then its base64 put in the written message's place for it
    # (_serialise_with): the email package's base64 and its writer would take several copies of a large file.
    attachments: list[Attachment] = []
    encoded: list[bytearray] = []
    total = 0
    for i, item in enumerate(request.attachments):
        try:
            data = _decode_base64(item.content_base64)
        except (binascii.Error, ValueError):
            errors[f"attachments[{i}].content_base64"] = "is not valid base64"
            continue
        total += len(data)
        attachments.append(Attachment(filename=item.filename, content_type=item.content_type, data=b""))
        encoded.append(_wrapped_base64(data))
        del data
    try:
        message = build_message(
            sender=sender or "nobody@invalid.invalid",
            to=request.to,
            subject=request.subject,
            text=request.text,
            html=request.html,
            cc=request.cc,
            bcc=request.bcc,
            reply_to=request.reply_to,
            attachments=attachments,
            headers=request.headers,
        )
    except ValidationError as exc:
        for name, text in exc.errors.items():
            errors.setdefault("from" if name == "sender" else name, text)
        message = None
    if errors:
        raise ValidationError(errors)
    assert message is not None and sender
    _limit_errors((), total, limits)  # refuse oversized attachments before serialising them
    # build_message parsed every address (parse_mailbox keeps its answers): no need to read the headers back.
    recipients = _unique([parse_mailbox(value).addr_spec for value in (*request.to, *request.cc, *request.bcc)])
    del message["Bcc"]  # the Bcc recipients are in the envelope only (RFC 5322 s3.6.3)
    raw = _serialise_with(message, encoded)
    _limit_errors(recipients, len(raw), limits)
    return NewMessage(
        sender=parse_mailbox(sender).addr_spec,
        recipients=recipients,
        message_id=str(message["Message-ID"]),
        subject=request.subject[:255],
        raw=raw,
    )


def _addresses(message: EmailMessage, name: str) -> list[str]:
    out: list[str] = []
    for header in message.get_all(name, []):
        out.extend(address.addr_spec for address in getattr(header, "addresses", ()))
    return out


def from_raw(body: bytes, limits: Limits) -> NewMessage:
    """Check a raw RFC 5322 message (``Content-Type: message/rfc822``).

    From defaults to the configured sender; Date and Message-ID are added when missing; the envelope
    recipients are To, Cc and Bcc, and Bcc is removed from the header (RFC 5322 s3.6.3).  The header section is
    parsed and written again; the body is kept as it came, its line ends made CRLF.
    """
    _limit_errors((), len(body), limits)
    check_raw(body)
    found = _HEADER_END.search(body)
    if found is not None:
        head = body[: found.start() + 1]  # through the line end of the last field
        message = email.message_from_bytes(head + b"\r\n", _class=EmailMessage, policy=POLICY)
        # The header section as the parser sees it ends at the same empty line (else: _from_parsed_raw).
        if message.get_payload() == "" and b"\r" not in head.replace(b"\r\n", b""):
            if not message.keys():
                raise ValidationError({"body": _NOT_A_MESSAGE})
            sender, recipients = _checked_header(message, limits)
            start = found.end()
            rest: bytes | memoryview = memoryview(body)[start:]  # not copied when its line ends are CRLF
            if not body.count(b"\n", start) == body.count(b"\r\n", start) == body.count(b"\r", start):
                # Every line end (CRLF, LF or a lone CR) made CRLF, as the email package writes a message's lines.
                rest = body[start:].replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
            raw = b"".join([_serialise(message), rest])  # the header section written ends with the empty line
            return _new_raw(message, sender, recipients, raw, limits)
    return _from_parsed_raw(body, limits)


#: The empty line that ends a header section (after an LF or CRLF line end).
_HEADER_END = re.compile(rb"\n\r?\n")
_NOT_A_MESSAGE = "is not an RFC 5322 message (header fields, an empty line, the body)"


def _from_parsed_raw(body: bytes, limits: Limits) -> NewMessage:
    """from_raw for a message whose header section does not end where an empty line is found (a line that
    is not a field, or lone CR line ends): the whole message parsed and written again, as the parser sees it."""
    message = email.message_from_bytes(body, _class=EmailMessage, policy=POLICY)
    if not message.keys() or (not message.get_payload() and b"\n\n" not in body.replace(b"\r\n", b"\n")):
        raise ValidationError({"body": _NOT_A_MESSAGE})
    sender, recipients = _checked_header(message, limits)
    return _new_raw(message, sender, recipients, _serialise(message), limits)


def _checked_header(message: EmailMessage, limits: Limits) -> tuple[str, list[str]]:
    """Check the address fields and line breaks of a raw message's header; set From (the configured sender),
    Date and Message-ID when missing and remove Bcc.  The sender and the recipients (To, Cc, Bcc)."""
    errors: dict[str, str] = {}
    recipients: list[str] = []
    senders: list[str] = []
    wanted = {"from", "to", "cc", "bcc", "reply-to", "sender"}
    errors.update(duplicate_errors(message.keys(), "headers."))
    for name, value in message.raw_items():
        # Folding (CRLF + whitespace) is allowed; a line break that starts no continuation line is not.
        unfolded = re.sub(r"\r?\n[ \t]", " ", value).rstrip("\r\n")
        if "\r" in unfolded or "\n" in unfolded:
            errors[f"headers.{name}"] = "must not contain line breaks"
        if name.lower() not in wanted:
            problem = field_errors(name, unfolded)
            if problem is not None:
                errors.setdefault(f"headers.{name}", problem)
            continue
        label = f"headers.{name}"
        try:
            header = POLICY.header_factory(name, unfolded)
            groups = tuple(getattr(header, "groups", ()))
            addresses = tuple(getattr(header, "addresses", ()))
            defects = header.defects
        except Exception:  # the parser raises assorted errors on garbage
            groups, addresses, defects = (), (), ("unparsable",)
        # An empty group (``To: undisclosed-recipients:;``) names no one; it is valid where an address list is.
        if defects or not (addresses or (groups and name.lower() != "from" and name.lower() != "sender")):
            errors[label] = "is not a valid address list"
            continue
        for address in addresses:
            try:
                check_address(address)  # the address as parsed in its field: not parsed again
            except ValueError as exc:
                errors[label] = f"{address.addr_spec!r} {exc}"
            if name.lower() in ("to", "cc", "bcc"):
                recipients.append(address.addr_spec)
        if name.lower() == "from" and addresses:
            senders.append(addresses[0].addr_spec)
    if "From" not in message:
        if limits.default_sender:
            message["From"] = limits.default_sender
            senders.append(_addresses(message, "From")[0])  # the header just made: not parsed again
        else:
            errors["headers.From"] = "is required: no sender is configured on the Email server page"
    if not recipients and not any(k.startswith("headers.") and k[8:].lower() in ("to", "cc", "bcc") for k in errors):
        errors["headers.To"] = "at least one recipient (To, Cc or Bcc) is required"
    if errors:
        raise ValidationError(errors)
    del message["Bcc"]
    if "Date" not in message:
        message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    sender = senders[0]
    if "Message-ID" not in message:
        message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or "mailgate.invalid")
    return sender, recipients


def _new_raw(message: EmailMessage, sender: str, recipients: list[str], raw: bytes, limits: Limits) -> NewMessage:
    unique = _unique(recipients)
    _limit_errors(unique, len(raw), limits)
    return NewMessage(
        sender=sender,
        recipients=unique,
        message_id=str(message["Message-ID"]),
        subject=str(message.get("Subject", ""))[:255],
        raw=raw,
    )

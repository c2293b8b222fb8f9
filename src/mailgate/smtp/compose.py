"""Building a valid message from plain parameters (used by the API, the outbox and ``mailgate send``).

Header syntax is RFC 5322; addresses are parsed with the standard library's RFC 5322 parser
(``email.headerregistry``).  Every problem found is reported at once in a ValidationError.

Messages are built with :data:`POLICY`: the standard library's ``email.policy.default`` with a header factory
that does the same work once instead of on every header (see :class:`_HeaderRegistry`).
"""

from __future__ import annotations

import email.headerregistry
import email.message
import email.policy
import email.utils
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import BaseHeader
from typing import Any

from ..errors import ValidationError

__all__ = ["POLICY", "Attachment", "build_message", "parse_mailbox"]

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
# A message without To (its recipients all in Cc or Bcc, RFC 5322 s3.6.3) gets an empty group as To, as mail
# clients do (RFC 5322 s3.4, example in appendix A.1.3): readers see something sensible, filters see a To.
_UNDISCLOSED_RECIPIENTS = "undisclosed-recipients:;"

# Header fields whose values recur from message to message (the sender, frequent recipients, the MIME fields):
# their header objects are kept.  One weighs 10-20 KB (its parse tree), hence the small bound; the least
# recently used go first, so the sender's and the MIME fields' stay.
_RECURRING: tuple[type, ...] = (
    email.headerregistry.AddressHeader,
    email.headerregistry.ContentTypeHeader,
    email.headerregistry.ContentTransferEncodingHeader,
    email.headerregistry.ContentDispositionHeader,
    email.headerregistry.MIMEVersionHeader,
)
_RECURRING_KEPT = 256


class _Header(BaseHeader):
    """The standard ``BaseHeader``, remembering its folded form for the last few policies it was folded with.

    A header object does not change (a ``str`` with read-only properties over its parse tree), nor does a
    policy: the same header folded with the same policy gives the same text.
    """

    _FOLDS_KEPT = 4

    def fold(self, *, policy: email.policy.Policy) -> str:
        folds: dict[email.policy.Policy, str] = self.__dict__.setdefault("_folds", {})
        folded = folds.get(policy)
        if folded is None:
            folded = super().fold(policy=policy)
            if len(folds) >= self._FOLDS_KEPT:
                folds.clear()
            folds[policy] = folded
        return folded

    def __getstate__(self) -> dict[str, Any]:  # pickle and deepcopy: what BaseHeader has, not the folds
        return {k: v for k, v in self.__dict__.items() if k != "_folds"}


class _HeaderRegistry(email.headerregistry.HeaderRegistry):
    """The standard header registry and header factory, doing once what the standard library does each time.

    ``HeaderRegistry.__getitem__`` builds a new class with ``type()`` on every lookup (each header set, read
    back or counted): here each class is built once.  The header objects of the recurring fields
    (:data:`_RECURRING`) made from a string are kept, by field name and value, with their folded forms
    (:class:`_Header`).  Parsing and folding are the standard library's own.
    """

    def __init__(self) -> None:
        super().__init__(base_class=_Header)
        self._reset()

    def _reset(self) -> None:
        self._classes: dict[type, tuple[type[BaseHeader], bool]] = {}
        self._kept = functools.lru_cache(maxsize=_RECURRING_KEPT)(_make_header)

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        super().map_to_type(name, cls)
        self._reset()

    def _class(self, name: str) -> tuple[type[BaseHeader], bool]:
        kind = self.registry.get(name.lower(), self.default_class)
        found = self._classes.get(kind)
        if found is None:
            cls = type("_" + kind.__name__, (kind, self.base_class), {})
            found = self._classes[kind] = (cls, issubclass(kind, _RECURRING))
        return found

    def __getitem__(self, name: str) -> type[BaseHeader]:
        return self._class(name)[0]

    def __call__(self, name: str, value: Any) -> BaseHeader:
        cls, recurring = self._class(name)
        if recurring and type(value) is str:
            return self._kept(cls, name, value)
        return cls(name, value)

    def __getstate__(self) -> dict[str, Any]:  # pickle and deepcopy (of a policy): the registry, not the caches
        return {k: v for k, v in self.__dict__.items() if k not in ("_classes", "_kept")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()


def _make_header(cls: type[BaseHeader], name: str, value: str) -> BaseHeader:
    return cls(name, value)


#: ``email.policy.default`` with a faster header factory (:class:`_HeaderRegistry`): build and serialise with it.
POLICY = email.policy.default.clone(header_factory=_HeaderRegistry())


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
    return _parse_mailbox(value)


# The last 4096 different values parsed, kept: an Address does not change.  A refusal is not kept (lru_cache
# keeps results only), and says the same each time.
@functools.lru_cache(maxsize=4096)
def _parse_mailbox(value: str) -> email.headerregistry.Address:
    if _has_line_break(value):
        raise ValueError("must not contain line breaks")
    if not value.strip():
        raise ValueError("is empty")
    try:
        header = POLICY.header_factory("To", value)
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
    bcc: Sequence[str] = (),
    reply_to: str | None = None,
    attachments: Sequence[Attachment] = (),
    headers: Mapping[str, str] | None = None,
) -> email.message.EmailMessage:
    """An EmailMessage with Date and Message-ID set, a text (and optional HTML) body and attachments.

    At least one recipient is required, in ``to``, ``cc`` or ``bcc``; without ``to``, To is
    ``undisclosed-recipients:;`` (an empty group).  ``bcc`` is a Bcc header field: the SMTP layer sends to
    it and leaves it out of the message sent (RFC 5322 s3.6.3); remove it before storing the message.
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
    cc_addresses = [mailbox(f"cc[{i}]", value) for i, value in enumerate(cc)]
    bcc_addresses = [mailbox(f"bcc[{i}]", value) for i, value in enumerate(bcc)]
    if not (to or cc or bcc):
        errors["to"] = "at least one recipient (to, cc or bcc) is required"
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

    message = email.message.EmailMessage(policy=POLICY)
    # Address fields are set from the text of their parsed addresses: the same header the Address objects
    # would make (it parses that same text), and one the header factory may have kept already.
    message["From"] = str(from_address)
    message["To"] = ", ".join(str(a) for a in to_addresses if a is not None) or _UNDISCLOSED_RECIPIENTS
    if cc_addresses:
        message["Cc"] = ", ".join(str(a) for a in cc_addresses if a is not None)
    if bcc_addresses:
        message["Bcc"] = ", ".join(str(a) for a in bcc_addresses if a is not None)
    if reply_address is not None:
        message["Reply-To"] = str(reply_address)
    message["Subject"] = subject
    message["Date"] = datetime.now(UTC)  # formatted as email.utils.format_datetime does
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

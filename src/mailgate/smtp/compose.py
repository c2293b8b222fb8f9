"""Building a valid message from plain parameters (used by the API, the outbox and ``mailgate send``).

Header syntax is RFC 5322; addresses are parsed with the standard library's RFC 5322 parser
(``email.headerregistry``).  Every problem found is reported at once in a ValidationError.

Messages are built with :data:`POLICY` (the standard library's ``email.policy.SMTP``) through the public API of
``email.message.EmailMessage``: header fields set by name, bodies by ``set_content``/``add_alternative``/
``add_attachment``.
"""

from __future__ import annotations

import email.errors
import email.headerregistry
import email.message
import email.policy
import email.utils
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import idna

from ..errors import ValidationError

__all__ = ["POLICY", "Attachment", "build_message", "check_address", "parse_mailbox", "simple_addr_spec"]

# RFC 5322 s3.6.8: a field name is printable US-ASCII except ":".
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # fullmatch: "$" would let a final line feed through
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

# RFC 5322 s3.2.3 atext, and dot-atom-text.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_TEXT = rf"{_ATEXT}(?:\.{_ATEXT})*"
# A host name: letters, digits and hyphens (RFC 1123 s2.1), two labels at least.
_LDH_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_SIMPLE_ADDR_SPEC = re.compile(rf"({_DOT_ATOM_TEXT})@({_LDH_LABEL}(?:\.{_LDH_LABEL})+)").fullmatch
_SIMPLE_ADDR_SPEC_MAX = 254  # RFC 5321 s4.5.3.1.3 (a path of 256 with its angle brackets)


def simple_addr_spec(value: str) -> bool:
    """Whether ``value`` is a bare addr-spec of dot-atoms and a host name, which address parsers give back as
    it is (no display name, comment, quoting, space or control character)."""
    return len(value) <= _SIMPLE_ADDR_SPEC_MAX and _SIMPLE_ADDR_SPEC(value) is not None


class _HeaderClasses(email.headerregistry.HeaderRegistry):
    """The standard registry, making each header class once, and each header of a text value seen lately.

    ``HeaderRegistry.__getitem__`` builds a new class (``type(...)``) for every header set or parsed, about a
    sixth of the time a message takes to compose; the class only depends on the header's name, so one per
    name serves every message.  Same classes, same behaviour: only the repeated ``type()`` calls go.

    A header is an immutable ``str`` made from its name and value alone, and parsing the value is most of the
    cost of composing a message: a header whose name and text were made lately is handed out again (a sender's
    From, MIME-Version, Content-Type, and each recipient that ``parse_mailbox`` has just parsed as "To").
    """

    def __init__(self) -> None:
        super().__init__()
        self.made: dict[str, type[email.headerregistry.BaseHeader]] = {}
        self._recent = functools.lru_cache(maxsize=_RECENT)(super().__call__)

    def __call__(self, name: str, value: Any) -> email.headerregistry.BaseHeader:
        if type(value) is str and len(value) <= _RECENT_MAX_CHARS:
            return self._recent(name, value)
        return super().__call__(name, value)

    def __getitem__(self, name: str) -> type[email.headerregistry.BaseHeader]:
        key = name.lower()
        made = self.made.get(key)
        if made is None:
            made = self.made[key] = super().__getitem__(name)
        return made


#: The headers kept, and the longest value kept: a parsed header takes 10-20 KB for a short value (tracemalloc),
#: 100 KB for an address list of 200 characters.  At most a few MB.
_RECENT, _RECENT_MAX_CHARS = 128, 128


#: The standard library's policy for messages sent by SMTP (``email.policy.default`` with CRLF line ends), with
#: :class:`_HeaderClasses`: messages are built, parsed and serialised with it.
POLICY = email.policy.SMTP.clone(header_factory=_HeaderClasses())


@dataclass(frozen=True)
class Attachment:
    """A file to attach: its name as the recipient sees it, its MIME type, and its bytes."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)


# What str.splitlines splits at: CR and LF, and VT, FF, FS, GS, RS, NEL, LINE and PARAGRAPH SEPARATOR, which
# the email package refuses in a header value too (with a ValueError).
_LINE_BREAK = re.compile("[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _has_line_break(value: str) -> bool:
    return _LINE_BREAK.search(value) is not None


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
    if len(addresses) == 1 and any(isinstance(d, email.errors.NonASCIILocalPartDefect) for d in header.defects):
        raise ValueError(NON_ASCII_LOCAL_PART)
    if header.defects or len(addresses) != 1:
        raise ValueError("must be exactly one valid address, like name@example.com")
    return check_address(addresses[0])


def check_address(address: email.headerregistry.Address) -> email.headerregistry.Address:
    """An address parsed from a header field (without defects), when it is a full address: with its domain in
    ASCII (IDNA); else ValueError saying what is wrong."""
    if not address.username or not address.domain or "." not in address.domain.strip("."):
        raise ValueError("must be a full address, like name@example.com")
    if not address.domain.isascii():
        # An internationalised domain name goes in its ASCII form (RFC 5890 A-labels: bücher.de is
        # xn--bcher-kva.de), in the envelope and the header alike: every server takes it.  In a header the
        # email package would write the Unicode form as an RFC 2047 encoded word, which is not allowed there.
        domain = _a_labels(address.domain)
        if domain is None:
            raise ValueError(BAD_DOMAIN_NAME.format(address.domain))
        address = email.headerregistry.Address(address.display_name, address.username, domain)
    return address


#: Why parse_mailbox refuses an address it cannot write in ASCII.
NON_ASCII_LOCAL_PART = (
    "has characters outside ASCII before the @: mailgate sends addresses in ASCII (SMTPUTF8 is not supported); "
    "use the mailbox's ASCII address or alias"
)
BAD_DOMAIN_NAME = "has a domain that is not a valid internationalised domain name ({})"


def _a_labels(domain: str) -> str | None:
    """``domain`` in ASCII (IDNA 2008 with the UTS 46 mapping, as browsers and registries use: straße.de is
    xn--strae-oqa.de, not strasse.de as Python's own "idna" codec, IDNA 2003, has it); None if it is not a
    valid domain name."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


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
        if not _FIELD_NAME.fullmatch(name):
            errors[f"headers.{name}"] = "is not a valid header name"
        elif name.lower() in _RESERVED:
            errors[f"headers.{name}"] = "is set from its own parameter"
        elif name.lower().startswith("content-"):
            # Setting the body would silently drop it: refuse it instead.
            errors[f"headers.{name}"] = "is a content field, set from text, html and attachments"
        elif _has_line_break(value):
            errors[f"headers.{name}"] = "must not contain line breaks"
        elif name.lower() == "message-id" and not (value.isascii() and _MSG_ID.match(value.strip())):
            errors[f"headers.{name}"] = "must look like <unique@domain> (ASCII)"
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

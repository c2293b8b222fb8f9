"""Building a valid message from plain parameters (used by the API, the outbox and ``mailgate send``).

Header syntax is RFC 5322; addresses are parsed with the standard library's RFC 5322 parser
(``email.headerregistry``).  Every problem found is reported at once in a ValidationError.

Messages are built with :data:`POLICY`: the standard library's ``email.policy.default`` with a header factory
that does the same work once instead of on every header (see :class:`_HeaderRegistry`), and that makes the
header objects of simple values (a plain ASCII subject, bare addresses, a Date, a Message-ID) without the
standard library's parser (see :func:`_simple_header`).  The common simple cases also skip the parser in
:func:`parse_mailbox` and the content manager for a plain ASCII text body (:func:`_set_plain_text`): each time
with exactly the result the standard library gives, which tests/smtp/test_compose_fast.py compares.

The commonest message of all (bare addresses, a plain ASCII subject and short-lined ASCII text, every header
field on one line) is not built at all by :func:`simple_message_bytes`: it writes the bytes build_message's
message would be serialised to, directly (tests/outbox/test_compose_direct.py compares them).
"""

from __future__ import annotations

import email.contentmanager
import email.errors
import email.headerregistry
import email.message
import email.policy
import email.utils
import functools
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address, BaseHeader, Group
from typing import Any

import idna

from ..errors import ValidationError

__all__ = ["POLICY", "Attachment", "build_message", "parse_mailbox", "simple_addr_spec", "simple_message_bytes"]

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

    A *simple* header (made by :func:`_simple_header`; ``_simple`` true) has a value that the standard
    library's parser reproduces exactly (``str`` of its parse tree is the value) and whose fold, when
    ``name: value`` fits on a line, is that line: the parse tree of printable ASCII is written token by
    token, none encoded (``_refold_parse_tree``).  Its parse tree is made only when something reads it (a
    longer fold, or a narrower policy).
    """

    _FOLDS_KEPT = 4
    _simple = False

    def __getattr__(self, name: str) -> Any:  # only for what is not set: a simple header's parse tree
        if name == "_parse_tree" and self.__dict__.get("_simple"):
            tree = self.__dict__["_parse_tree"] = self.value_parser(str(self))
            return tree
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def fold(self, *, policy: email.policy.Policy) -> str:
        if self._simple and isinstance(policy, email.policy.EmailPolicy):
            # What _refold_parse_tree makes of ["Name:", " ", value] when all of it is ASCII and fits on a line.
            name = self.name
            if len(name) + 2 + len(self) <= (policy.max_line_length or sys.maxsize):
                return name + ": " + self + policy.linesep
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
    (:class:`_Header`).  Simple values of the standard kinds in :data:`_SIMPLE_MAKERS` get their header
    objects without the parser (:func:`_simple_header`); every other value is parsed and folded by the
    standard library.
    """

    def __init__(self) -> None:
        super().__init__(base_class=_Header)
        self._reset()

    def _reset(self) -> None:
        self._classes: dict[type, tuple[type[BaseHeader], bool, _SimpleMaker | None]] = {}
        self._kept = functools.lru_cache(maxsize=_RECURRING_KEPT)(_make_header)

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        super().map_to_type(name, cls)
        self._reset()

    def _class(self, name: str) -> tuple[type[BaseHeader], bool, _SimpleMaker | None]:
        kind = self.registry.get(name.lower(), self.default_class)
        found = self._classes.get(kind)
        if found is None:
            cls = type("_" + kind.__name__, (kind, self.base_class), {})
            # A simple header needs _Header's fold and parse tree on demand: only with that base class.
            simple = _SIMPLE_MAKERS.get(kind) if self.base_class is _Header else None
            found = self._classes[kind] = (cls, issubclass(kind, _RECURRING), simple)
        return found

    def __getitem__(self, name: str) -> type[BaseHeader]:
        return self._class(name)[0]

    def __call__(self, name: str, value: Any) -> BaseHeader:
        cls, recurring, simple = self._class(name)
        if recurring and type(value) is str:
            return self._kept(cls, name, value, simple)
        if simple is not None:
            header = simple(cls, name, value)
            if header is not None:
                return header
        return cls(name, value)

    def __getstate__(self) -> dict[str, Any]:  # pickle and deepcopy (of a policy): the registry, not the caches
        return {k: v for k, v in self.__dict__.items() if k not in ("_classes", "_kept")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()


def _make_header(cls: type[BaseHeader], name: str, value: str, simple: _SimpleMaker | None) -> BaseHeader:
    if simple is not None:
        header = simple(cls, name, value)
        if header is not None:
            return header
    return cls(name, value)


# Simple values, made into header objects without the parser --------------------------------------------------
#
# Each maker returns the header object the standard library would make (``cls(name, value)``: the same ``str``,
# name, defects (none) and the kind's own attributes: groups, datetime), or None for a value it leaves to the
# standard library.  The parse tree is made when read (_Header.__getattr__): by the kind's own value_parser, from
# the header's text, as BaseHeader.__new__ would have made it.  Checked against the standard library in
# tests/smtp/test_compose_fast.py.

_SimpleMaker = Callable[[type[BaseHeader], str, Any], "BaseHeader | None"]

# RFC 5322 s3.2.3 atext, and dot-atom-text.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_TEXT = rf"{_ATEXT}(?:\.{_ATEXT})*"
# A host name: letters, digits and hyphens (RFC 1123 s2.1), two labels at least.
_LDH_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# A bare addr-spec (no display name, comment, quoting or space) parses to exactly its local part and domain.
_SIMPLE_ADDR_SPEC = re.compile(rf"({_DOT_ATOM_TEXT})@({_LDH_LABEL}(?:\.{_LDH_LABEL})+)").fullmatch
_SIMPLE_ADDR_SPEC_MAX = 254  # RFC 5321 s4.5.3.1.3 (a path of 256 with its angle brackets)
# A Message-ID of dot-atom-text on both sides (RFC 5322 s3.6.4, without the obsolete or literal forms).
_SIMPLE_MSG_ID = re.compile(rf"<{_DOT_ATOM_TEXT}@{_DOT_ATOM_TEXT}>").fullmatch
_SIMPLE_MAX = 998  # RFC 5322 s2.1.1: no longer values (they would be folded anyway)


def _simple_text(value: str) -> bool:
    """Printable ASCII, not empty, without space at either end and without an RFC 2047 encoded word ``=?``.

    The standard library's unstructured parser gives such a value back as it is (``str`` of its parse tree),
    and no part of it is encoded when folded.
    """
    return (
        bool(value)
        and value[0] != " "
        and value[-1] != " "
        and value.isascii()
        and value.isprintable()
        and "=?" not in value
        and len(value) <= _SIMPLE_MAX
    )


def _simple_name(name: str) -> bool:
    return bool(name) and name.isascii() and name.isprintable()


def _simple_address(value: str) -> Address | None:
    """The Address the standard library's parser finds in a bare, simple addr-spec; None for anything else.

    ``=?`` is left to the parser: it decodes an RFC 2047 encoded word where a dot-atom or a word starts.
    """
    if len(value) > _SIMPLE_ADDR_SPEC_MAX or "=?" in value:
        return None
    match = _SIMPLE_ADDR_SPEC(value)
    if match is None:
        return None
    return Address("", match[1], match[2])


def simple_addr_spec(value: str) -> bool:
    """Whether ``value`` is a bare addr-spec of dot-atoms and a host name, which address parsers give back as
    it is (no display name, comment, quoting, space or control character)."""
    return len(value) <= _SIMPLE_ADDR_SPEC_MAX and _SIMPLE_ADDR_SPEC(value) is not None


def _simple_header(cls: type[BaseHeader], name: str, value: str, **attributes: Any) -> BaseHeader:
    """A header object as BaseHeader.__new__ and init make it, but for the parse tree, made when read."""
    header = str.__new__(cls, value)
    header.__dict__.update(_name=name, _defects=[], _simple=True, **attributes)
    return header


def _simple_unstructured(cls: type[BaseHeader], name: str, value: Any) -> BaseHeader | None:
    # UnstructuredHeader.parse: decoded is str(get_unstructured(value)), the value itself; no defects kept.
    if type(value) is not str or not _simple_text(value) or not _simple_name(name):
        return None
    return _simple_header(cls, name, value)


def _simple_address_list(cls: type[BaseHeader], name: str, value: Any) -> BaseHeader | None:
    # AddressHeader.parse of a string: one Group(None, [Address]) per mailbox, decoded ", "-joined.
    if type(value) is not str or len(value) > _SIMPLE_MAX or not value or not _simple_name(name):
        return None
    groups = []
    for item in value.split(", "):
        address = _simple_address(item)
        if address is None:
            return None
        groups.append(Group(None, [address]))
    return _simple_header(cls, name, value, _groups=tuple(groups), _addresses=None)


def _simple_date(cls: type[BaseHeader], name: str, value: Any) -> BaseHeader | None:
    # DateHeader.parse of a datetime: decoded is format_datetime(value); datetime is the value itself.
    if not isinstance(value, datetime) or not _simple_name(name):
        return None
    decoded = email.utils.format_datetime(value)
    if not _simple_text(decoded):
        return None
    return _simple_header(cls, name, decoded, _datetime=value)


def _simple_message_id(cls: type[BaseHeader], name: str, value: Any) -> BaseHeader | None:
    # MessageIDHeader.parse: decoded is str(parse_message_id(value)), the value itself for <dot-atom@dot-atom>.
    if type(value) is not str or len(value) > _SIMPLE_MAX or not _simple_name(name) or not _SIMPLE_MSG_ID(value):
        return None
    return _simple_header(cls, name, value)


_SIMPLE_MAKERS: dict[type, _SimpleMaker] = {
    email.headerregistry.UnstructuredHeader: _simple_unstructured,
    email.headerregistry.UniqueUnstructuredHeader: _simple_unstructured,
    email.headerregistry.AddressHeader: _simple_address_list,
    email.headerregistry.UniqueAddressHeader: _simple_address_list,
    email.headerregistry.SingleAddressHeader: _simple_address_list,
    email.headerregistry.UniqueSingleAddressHeader: _simple_address_list,
    email.headerregistry.DateHeader: _simple_date,
    email.headerregistry.UniqueDateHeader: _simple_date,
    email.headerregistry.MessageIDHeader: _simple_message_id,
}


_HEADERS = _HeaderRegistry()
#: ``email.policy.default`` with a faster header factory (:class:`_HeaderRegistry`): build and serialise with it.
POLICY = email.policy.default.clone(header_factory=_HEADERS)


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
    simple = _simple_address(value)  # what the parser finds in a bare addr-spec, found without it
    if simple is not None:
        return simple
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
    address = addresses[0]
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


_RAW_DATA_MANAGER = email.contentmanager.raw_data_manager


def _set_plain_text(message: email.message.EmailMessage, text: str) -> bool:
    """``message.set_content(text)`` for plain ASCII text with short lines, without the content manager.

    What ``EmailMessage.set_content`` and ``contentmanager.set_text_content`` do to a message without content
    fields when every line is at most ``max_line_length`` long and all is ASCII (they choose ``7bit``):
    ``Content-Type: text/plain; charset="utf-8"`` (set as ``text/plain``, the charset added in place),
    ``Content-Transfer-Encoding: 7bit``, ``MIME-Version: 1.0``, and as payload the text split into lines as
    ``bytes.splitlines`` splits (at LF, CRLF and CR), joined with LF and ended with one.  Returns False, having
    done nothing, for anything else (then call ``set_content``).
    """
    policy = message.policy
    if not isinstance(policy, email.policy.EmailPolicy) or policy.content_manager is not _RAW_DATA_MANAGER:
        return False
    maxlen = policy.max_line_length
    if not maxlen or not text.isascii() or message.get_content_maintype() == "multipart":
        return False
    if "MIME-Version" in message or any(name.lower().startswith("content-") for name in message):
        return False  # set_content would remove the content fields, or keep the MIME-Version
    lines = text.encode("ascii").splitlines()
    if lines and max(map(len, lines)) > maxlen:
        return False
    message["Content-Type"] = 'text/plain; charset="utf-8"'
    message["Content-Transfer-Encoding"] = "7bit"
    message["MIME-Version"] = "1.0"
    message.set_payload((b"\n".join(lines) + b"\n").decode("ascii"))
    return True


# What _set_plain_text's fields and the empty line after the header section are written as, with CRLF line ends.
_PLAIN_TEXT_FIELDS = (
    b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\n'
)


def simple_message_bytes(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[bytes, str] | None:
    """The bytes of ``build_message(...)`` without its Bcc field, as ``as_bytes`` writes them with CRLF line
    ends, and its Message-ID: written directly, without building the message, for a simple message only.

    Building and serialising an EmailMessage costs several times more than the bytes themselves.  Simple:
    every address a bare addr-spec (:func:`_simple_address`, so written as given), a :func:`_simple_text` or
    empty subject, other fields of the plain unstructured kind with a :func:`_simple_text` value (a
    Message-ID among them is left to build_message), a text :func:`_set_plain_text` takes, and every field
    ``Name: value`` within the line length (what a simple header is written as, see :class:`_Header`).
    Returns None for anything else, having done nothing: then call build_message.
    """
    maxlen = POLICY.max_line_length
    if not maxlen or not (to or cc or bcc) or not text.isascii():
        return None
    from_address = _simple_address(sender)
    if from_address is None or (reply_to is not None and _simple_address(reply_to) is None):
        return None
    if any(_simple_address(value) is None for value in (*to, *cc, *bcc)):
        return None
    if subject and not _simple_text(subject):
        return None
    lines = text.encode("ascii").splitlines()  # as _set_plain_text splits it
    if lines and max(map(len, lines)) > maxlen:
        return None
    fields = [("From", sender), ("To", ", ".join(to) or _UNDISCLOSED_RECIPIENTS)]
    if cc:
        fields.append(("Cc", ", ".join(cc)))
    if reply_to is not None:
        fields.append(("Reply-To", reply_to))
    fields.append(("Subject", subject))
    for name, value in (headers or {}).items():
        key = name.lower()
        kind = _HEADERS.registry.get(key, _HEADERS.default_class)
        if not _FIELD_NAME.fullmatch(name) or key in _RESERVED or key.startswith("content-"):
            return None  # refused by build_message
        if kind is not email.headerregistry.UnstructuredHeader or not _simple_name(name) or not _simple_text(value):
            return None  # a Message-ID or another structured field, or a name or value the parser may change
    fields.append(("Date", email.utils.format_datetime(datetime.now(UTC))))  # as _simple_date writes it
    message_id = email.utils.make_msgid(domain=_message_id_domain(from_address.domain))
    if not _SIMPLE_MSG_ID(message_id):
        return None
    fields.append(("Message-ID", message_id))
    fields.extend((headers or {}).items())
    if any(len(name) + 2 + len(value) > maxlen for name, value in fields):
        return None  # folded by the standard library
    # The standard library writes an empty Subject as "Subject:", without the space.
    head = "".join(f"{name}: {value}\r\n" if value else f"{name}:\r\n" for name, value in fields)
    return head.encode("ascii") + _PLAIN_TEXT_FIELDS + b"\r\n".join(lines) + b"\r\n", message_id


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
    if not _set_plain_text(message, text):
        message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        message.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return message

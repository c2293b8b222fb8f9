"""Cheap checks of a message request before it is composed: counts, control characters, line lengths, fields.

They run first, on the request as it came, so that a request the composer would choke on (thousands of
attachments or recipients, an injected line break, a field the email package cannot parse) is refused with a
422 naming the field and the limit, before any expensive work.  They do not depend on how the message is then
built: structured fields are parsed with the standard library's own header classes (those of
``email.policy.default``, from a ``HeaderRegistry``).
"""

from __future__ import annotations

import email.headerregistry
import functools
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ..errors import ValidationError

if TYPE_CHECKING:
    from .compose import Limits, MessageRequest

__all__ = [
    "DEFAULT_MAX_RECIPIENTS",
    "HEAVY_BYTES",
    "HEAVY_ITEMS",
    "MAX_ATTACHMENTS",
    "MAX_HEADERS",
    "MAX_HEADER_NAME",
    "MAX_LINE",
    "MAX_RAW_FIELDS",
    "check_raw",
    "check_request",
    "field_errors",
    "recipient_limit",
]

#: A message this large, or with this many items (recipients, attachments, header fields; for a raw message:
#: "@" in it), is parsed and composed in a worker thread: the event loop keeps answering the other requests.
HEAVY_BYTES = 64 * 1024
HEAVY_ITEMS = 16

#: Recipients (to, cc and bcc together) per message when the provider's own limit is not known.
DEFAULT_MAX_RECIPIENTS = 500
#: Attachments per JSON message.
MAX_ATTACHMENTS = 100
#: Custom header fields (``headers``) per JSON message.
MAX_HEADERS = 100
#: Header fields in a raw message's header section (trace fields included).
MAX_RAW_FIELDS = 500
#: A header field name cannot be folded: with ": " it must fit in the recommended line of 78 characters.
MAX_HEADER_NAME = 76
#: RFC 5322 s2.1.1: a line is at most 998 characters, without its CRLF.
MAX_LINE = 998

#: The standard library's header classes (what email.policy.default parses each field with).
_REGISTRY = email.headerregistry.HeaderRegistry()


@functools.lru_cache(maxsize=1024)
def _header_class(name: str) -> type[email.headerregistry.BaseHeader]:
    """The registry's class for fields named ``name`` (lower case).  ``HeaderRegistry[name]`` makes a new class
    (``type(...)``) at every call: a raw message would pay that for each of its fields, twice."""
    kind: type[email.headerregistry.BaseHeader] = _REGISTRY[name]
    return kind


# Header values: CR and LF (a new header line: injection), NUL, and the other line separators that the
# email package splits at.
_LINE_BREAK = re.compile("[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_PLAIN_MSG_ID = re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>").fullmatch
_LONG_LINE = re.compile(rb"[^\r\n]{%d}" % (MAX_LINE + 1))


def recipient_limit(limits: Limits) -> int:
    """Recipients allowed per message: the provider's ``max_recipients``, else DEFAULT_MAX_RECIPIENTS."""
    return limits.max_recipients or DEFAULT_MAX_RECIPIENTS


def recipients_error(count: int, limits: Limits) -> ValidationError:
    """The 422 for a message with ``count`` recipients, over recipient_limit."""
    who = limits.provider or "mailgate (the provider's limit is not known)"
    return ValidationError(
        {
            "recipients": f"{count} recipients (to, cc and bcc together); {who} accepts at most "
            f"{recipient_limit(limits)} per message"
        },
        hint="Split the message into several messages.",
    )


def _header_text(value: str) -> str | None:
    """What is wrong with a header-ish value (a subject, an address, a filename...), or None."""
    if _LINE_BREAK.search(value) is not None:
        return "must not contain line breaks"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None


def field_errors(name: str, value: str) -> str | None:
    """What is wrong with the header field ``name: value`` (a custom JSON header or a raw message's field),
    as the standard library parses it, or None.  Unstructured fields are taken as they are."""
    if len(name) > MAX_HEADER_NAME:
        return f"has a name of {len(name)} characters; at most {MAX_HEADER_NAME} are allowed"
    kind = _header_class(name.lower())
    if issubclass(kind, email.headerregistry.UnstructuredHeader):
        return None
    if issubclass(kind, email.headerregistry.MessageIDHeader) and _PLAIN_MSG_ID(value):
        return None  # <dot-atom@dot-atom>, the usual form: read as it is
    try:
        header = kind(name, value)
        addresses = getattr(header, "addresses", None)
        groups = getattr(header, "groups", ())
        defects = header.defects
    except Exception:  # the parser raises assorted errors (IndexError, ValueError...) on garbage
        return f"cannot be read as a {name} field"
    if addresses is not None and (defects or not (addresses or groups)):
        return "is not a valid address list"
    if addresses is not None and any(not a.username or not a.domain for a in addresses):
        return "is not a valid address list (each address needs a local part and a domain)"
    return None


def duplicate_errors(names: Iterable[str], prefix: str) -> dict[str, str]:
    """Fields given more often than RFC 5322 allows (``Message-ID`` and ``message-id``: names are
    case-insensitive), by ``prefix + name``."""
    errors: dict[str, str] = {}
    names = list(names)
    counts = Counter(name.lower() for name in names)
    for name in names:
        most = _header_class(name.lower()).max_count  # what email.policy.default.header_max_count(name) reads
        if most is not None and counts[name.lower()] > most:
            errors[prefix + name] = (
                f"is given {counts[name.lower()]} times (names are case-insensitive); a message has at most {most}"
            )
    return errors


def check_request(request: MessageRequest, limits: Limits) -> None:
    """Refuse a JSON request over the counts, or with a control character where a header field is written.

    Cheap (no address is parsed): run before composing.  Raises ValidationError naming each field.
    """
    errors: dict[str, str] = {}
    distinct = len({*request.to, *request.cc, *request.bcc})  # an upper bound of the distinct addresses
    if distinct > recipient_limit(limits):
        raise recipients_error(distinct, limits)
    if len(request.attachments) > MAX_ATTACHMENTS:
        errors["attachments"] = f"has {len(request.attachments)} items; at most {MAX_ATTACHMENTS} are allowed"
    if len(request.headers) > MAX_HEADERS:
        errors["headers"] = f"has {len(request.headers)} fields; at most {MAX_HEADERS} are allowed"
    if errors:
        raise ValidationError(errors, hint="Send fewer items, or split the message.")
    values: list[tuple[str, str | None]] = [("from", request.sender), ("reply_to", request.reply_to)]
    values.append(("subject", request.subject))
    for field, items in (("to", request.to), ("cc", request.cc), ("bcc", request.bcc)):
        values.extend((f"{field}[{i}]", item) for i, item in enumerate(items))
    for i, attachment in enumerate(request.attachments):
        values.append((f"attachments[{i}].filename", attachment.filename))
        values.append((f"attachments[{i}].content_type", attachment.content_type))
    for label, value in values:
        problem = _header_text(value) if value is not None else None
        if problem is not None:
            errors[label] = problem
    for field, text in (("text", request.text), ("html", request.html)):
        if text is not None and "\x00" in text:
            errors[field] = "must not contain NUL characters"
    errors.update(_custom_header_errors(request.headers))
    if errors:
        raise ValidationError(errors)


def _custom_header_errors(headers: Mapping[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name, value in headers.items():
        problem = _header_text(name) or _header_text(value)
        if problem is not None:
            errors[f"headers.{name}"] = problem
    for name, value in headers.items():
        if f"headers.{name}" not in errors:
            problem = field_errors(name, value)
            if problem is not None:
                errors[f"headers.{name}"] = problem
    for label, problem in duplicate_errors(headers, "headers.").items():
        errors.setdefault(label, problem)
    return errors


_HEAD_END = re.compile(rb"\r?\n\r?\n|\r\r")
# The first line of each field (not a continuation line, not empty).
_FIELD_START = re.compile(rb"(?:\A|\n)[^ \t\r\n]")


def check_raw(body: bytes) -> None:
    """Refuse a raw message with NUL, a lone CR or LF among CRLF line ends in its header section, too many
    header fields, or a line over MAX_LINE octets.  Cheap (scans the bytes, parses nothing): run first.

    A body's long lines are refused rather than re-encoded: mailgate sends a raw body as the client wrote
    it, and re-encoding a part would break a signature over it (S/MIME, PGP/MIME, a client's DKIM).
    """
    found = _HEAD_END.search(body)
    head = body if found is None else body[: found.start()]
    errors: dict[str, str] = {}
    if b"\x00" in head:
        errors["headers"] = "must not contain NUL characters"
    # The line ends of the header section, the empty line after it included.
    ends = head if found is None else body[: found.end()]
    crlf = ends.count(b"\r\n")
    if ends.count(b"\r") != crlf or (crlf and ends.count(b"\n") != crlf):
        errors["headers"] = (
            "has a line break that is not CRLF among CRLF line ends (a lone CR or LF would start a new field "
            "for some readers)"
        )
    fields = sum(1 for _ in _FIELD_START.finditer(head))
    if fields > MAX_RAW_FIELDS:
        errors["headers"] = f"has {fields} fields; at most {MAX_RAW_FIELDS} are allowed"
    long_line = _LONG_LINE.search(head)
    if long_line is not None:
        errors["headers"] = f"has a line longer than {MAX_LINE} characters (RFC 5322 s2.1.1)"
    if found is not None:
        if body.find(b"\x00", found.end()) >= 0:
            errors["body"] = "must not contain NUL characters"
        elif _LONG_LINE.search(body, found.end()) is not None:
            errors["body"] = (
                f"has a line longer than {MAX_LINE} characters (RFC 5322 s2.1.1); encode the part "
                "(quoted-printable or base64), or send the message as JSON and mailgate encodes it"
            )
    if errors:
        raise ValidationError(errors)

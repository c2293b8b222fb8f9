"""The message as an HTTP send API must get it: these APIs take recipients from the headers, not an envelope.

Microsoft Graph ``sendMail`` (MIME) and the Gmail API ``messages.send`` deliver to the To, Cc and Bcc
addresses of the message, and remove the Bcc header from the copies they deliver (the sender's Sent copy keeps
it).  The outbox keeps Bcc recipients in the envelope only, so they are written into a Bcc header here, which
the API consumes: every envelope recipient is delivered, and no recipient sees the Bcc list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email import policy
from email.parser import HeaderParser
from email.utils import getaddresses

from ..errors import PermanentDeliveryError

__all__ = ["header_recipients", "with_envelope_recipients"]

_ADDRESS_HEADERS = ("to", "cc", "bcc")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def header_recipients(message: bytes) -> list[str]:
    """The addresses of the To, Cc and Bcc headers of ``message`` (serialised), To first, then Cc, then Bcc.

    The header block is decoded as UTF-8 (RFC 6532: internationalised addresses travel as raw UTF-8), so that
    they compare equal to the envelope's.
    """
    head = _BLANK_LINE.split(message, maxsplit=1)[0].decode("utf-8", "replace")
    headers = HeaderParser(policy=policy.compat32).parsestr(head + "\r\n\r\n", headersonly=True)
    values = [str(v) for name in _ADDRESS_HEADERS for v in headers.get_all(name) or []]
    return [address for _, address in getaddresses(values) if "@" in address]


def with_envelope_recipients(message: bytes, recipients: Sequence[str], api: str) -> bytes:
    """``message`` with the ``recipients`` absent from its headers added in a Bcc header (CRLF, folded).

    Raises PermanentDeliveryError when a header names an address the envelope does not: the API would
    deliver to it too (e.g. a retry for the recipients still pending), which only SMTP can avoid.
    """
    in_headers = {address.lower() for address in header_recipients(message)}
    wanted = {rcpt.lower() for rcpt in recipients}
    unwanted = sorted(in_headers - wanted)
    if unwanted:
        raise PermanentDeliveryError(
            f"{api} delivers to every address in the To, Cc and Bcc headers, and {len(unwanted)} of them "
            f"({', '.join(unwanted[:3])}{', ...' if len(unwanted) > 3 else ''}) are not recipients of this attempt.",
            hint="Send this message over SMTP (Email server page, Delivery: SMTP), or list the header "
            "recipients in the envelope too.",
        )
    hidden = [rcpt for rcpt in dict.fromkeys(recipients) if rcpt.lower() not in in_headers]
    if not hidden:
        return message
    # One address per line: header lines stay far below RFC 5322's 998 octets (RFC 5322 s.2.2.3 folding).
    return b"Bcc: " + ",\r\n ".join(hidden).encode("utf-8") + b"\r\n" + message

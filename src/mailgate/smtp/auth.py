"""SASL messages for OAuth 2.0 over SMTP: pure functions, no I/O.

- XOAUTH2: Google, "OAuth 2.0 Mechanism" (https://developers.google.com/gmail/imap/xoauth2-protocol),
  also the only mechanism Microsoft documents for SMTP AUTH
  (https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth).
- OAUTHBEARER: RFC 7628, with the GS2 header of RFC 5801.

The results contain access tokens: never log them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from ..transport import TokenSource
from .replies import enhanced_status

__all__ = [
    "AUTH_LINE_LIMIT",
    "OAUTHBEARER_ERROR_RESPONSE",
    "XOAUTH2_ERROR_RESPONSE",
    "SaslReply",
    "TokenSource",
    "initial_response_fits",
    "oauthbearer_initial_response",
    "parse_error_challenge",
    "xoauth2_initial_response",
]

#: What the client sends after an XOAUTH2 error challenge: an empty line (Google's XOAUTH2 document).
XOAUTH2_ERROR_RESPONSE = ""
#: What the client sends after an OAUTHBEARER error challenge: a single %x01, base64 "AQ==" (RFC 7628 s3.2.3).
OAUTHBEARER_ERROR_RESPONSE = base64.b64encode(b"\x01").decode("ascii")

#: The longest SMTP command line, CRLF included (RFC 5321 s4.5.3.1.4); RFC 4954 s4 applies it to AUTH with
#: an initial response.  Strict servers enforce it: Dovecot answers ``500 5.5.2 Line too long``.
AUTH_LINE_LIMIT = 512


# Characters that would break the \x01-separated key/value framing, or the SMTP command line.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


def _check(name: str, value: str) -> None:
    # The message names the field, never the value: the value may be a token.
    if not value or _FORBIDDEN.search(value):
        raise ValueError(f"The {name} is empty or contains control characters or spaces.")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def xoauth2_initial_response(user: str, token: str) -> str:
    """The base64 initial client response of ``AUTH XOAUTH2``.

    ``base64("user=" + user + "\\x01auth=Bearer " + token + "\\x01\\x01")``.
    """
    _check("user name", user)
    _check("access token", token)
    return _b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


def _saslname(user: str) -> str:
    # RFC 5801 s4: in a GS2 authzid "," is written "=2C" and "=" is written "=3D".
    return user.replace("=", "=3D").replace(",", "=2C")


def oauthbearer_initial_response(user: str, host: str, port: int, token: str) -> str:
    """The base64 initial client response of ``AUTH OAUTHBEARER`` (RFC 7628 s3.1).

    ``gs2-header kvsep *(key=value kvsep) kvsep`` with gs2-header ``n,a=<user>,`` (no channel binding),
    kvsep ``\\x01``, and the keys ``host``, ``port`` and ``auth``.
    """
    _check("user name", user)
    _check("host name", host)
    _check("access token", token)
    message = f"n,a={_saslname(user)},\x01host={host}\x01port={int(port)}\x01auth=Bearer {token}\x01\x01"
    return _b64(message)


def initial_response_fits(mechanism: str, initial_response: str) -> bool:
    """Whether ``AUTH <mechanism> <initial_response>`` CRLF fits in :data:`AUTH_LINE_LIMIT` octets.

    When it does not (Entra access tokens are > 2 KB), RFC 4954 s4 says the client MUST NOT send the initial
    response on the AUTH line: it sends ``AUTH <mechanism>`` alone and the response after the server's
    empty ``334`` challenge, on a line of its own (servers accept response lines of at least 12,288 octets).
    """
    return len(f"AUTH {mechanism} {initial_response}\r\n".encode()) <= AUTH_LINE_LIMIT


def parse_error_challenge(b64: str) -> dict[str, str]:
    """Decode the server's error challenge (the text of a ``334`` reply during AUTH).

    Gmail answers a rejected XOAUTH2 token with e.g.
    ``{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}``; RFC 7628 s3.2.2 defines the
    same JSON (``status``, ``scope``, ``openid-configuration``) for OAUTHBEARER.  Values are returned as
    strings.  Anything that is not base64 of a JSON object gives ``{}``: the challenge is informative only.
    """
    text = "".join(b64.split())
    if not text:
        return {}
    text += "=" * (-len(text) % 4)  # some servers drop the padding
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
        data = json.loads(decoded)
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in data.items()}


@dataclass(frozen=True)
class SaslReply:
    """The final reply to an OAuth AUTH exchange, with the decoded error challenge if there was one."""

    code: int
    message: str
    challenge: dict[str, str] | None = None

    @property
    def token_rejected(self) -> bool:
        """Whether a fresh access token may help."""
        # Worth one forced refresh: an error challenge with status 400/401 (Gmail, PROVIDERS.md) or
        # invalid_token (RFC 7628 s3.2.2); a 535 other than Microsoft's "SMTP AUTH disabled" (5.7.139,
        # which no token can fix); Microsoft's "501 5.5.127 token will expire soon".
        status = enhanced_status(self.message)
        if self.challenge is not None and self.challenge.get("status") in ("400", "401", "invalid_token"):
            return True
        return (self.code == 535 and status != "5.7.139") or status == "5.5.127"

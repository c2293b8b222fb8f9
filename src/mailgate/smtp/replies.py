"""SMTP replies and client exceptions become mailgate's typed errors, each with what to do next.

Reply classes follow RFC 5321 s4.2.1 (4yz transient, 5yz permanent) and the enhanced status codes of
RFC 3463; the provider-specific codes come from PROVIDERS.md (Google and Microsoft documentation).
This module is the one place that knows aiosmtplib's exception classes.
"""

from __future__ import annotations

import re
import socket
import ssl

import aiosmtplib

from .. import advice
from ..errors import SmtpAuthenticationError, SmtpError, SmtpPermanentError, SmtpTransientError

__all__ = ["CLIENT_ERRORS", "enhanced_status", "error_from_exception", "error_from_reply", "one_line"]

#: What aiosmtplib, the socket layer and ssl raise; everything else is a bug and propagates as is.
CLIENT_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)

# RFC 3463 s2: class "." subject "." detail, class in {2, 4, 5}.
_ENHANCED = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")

_WHAT = {
    "connect": "the connection",
    "tls": "STARTTLS",
    "ehlo": "EHLO",
    "auth": "authentication",
    "mail": "the sender (MAIL FROM)",
    "rcpt": "the recipient (RCPT TO)",
    "data": "the message (DATA)",
    "quit": "QUIT",
}


def one_line(text: str) -> str:
    """A multi-line reply text on one line (continuation lines joined with " | ")."""
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def enhanced_status(message: str) -> str:
    """The first RFC 3463 enhanced status code in a reply text (``"5.7.8"``), or ``""``."""
    match = _ENHANCED.search(message)
    return match.group(1) if match else ""


# Refusals of the credentials that only an administrator can fix, whatever the reply code: SMTP AUTH
# disabled (535 5.7.139), a token for another mailbox (535 5.7.3), Basic auth refused (550 5.7.30).
_CREDENTIALS_REFUSED = ("5.7.139", "5.7.3", "5.7.30")


def _error_class(code: int, status: str, during: str) -> type[SmtpError]:
    if code >= 500 and (status in _CREDENTIALS_REFUSED or (during == "auth" and code in (530, 534, 535))):
        return SmtpAuthenticationError
    if status == "5.5.127":
        # "Token will expire soon" is a timing problem, not a configuration problem: the same message
        # succeeds with a fresher token, so it is worth retrying.
        return SmtpTransientError
    if 400 <= code < 500:
        return SmtpTransientError
    return SmtpPermanentError


def error_from_reply(code: int, message: str, *, during: str) -> SmtpError:
    """The typed error for a negative reply ``code message`` to the command of stage ``during``.

    ``during`` is one of connect, ehlo, tls, auth, mail, rcpt, data, quit.  4xx gives
    SmtpTransientError, 5xx SmtpPermanentError, 530/534/535 during auth SmtpAuthenticationError.
    """
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    status = enhanced_status(text)
    cls = _error_class(code, status, during)
    what = _WHAT.get(during, during)
    found = advice.smtp_reply(code, status, text, during=during)
    return cls(
        f"The SMTP server refused {what}: {code} {text}".rstrip(),
        cause=found.cause if found else "",
        hint=found.fix if found else "",
        reply_code=code,
        reply=text,
    )


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _tls_error(exc: BaseException, host: str) -> SmtpError | None:
    verify = _find(exc, ssl.SSLCertVerificationError)
    if isinstance(verify, ssl.SSLCertVerificationError):
        reason = verify.verify_message or str(verify)
        if verify.verify_code == 62 or "mismatch" in reason.lower():  # X509_V_ERR_HOSTNAME_MISMATCH
            hint = (
                f"The server's certificate is not issued for the name {host!r}. Use the host name written in the "
                "certificate (e.g. smtp.gmail.com or smtp.office365.com, not an IP address or an alias)."
            )
        else:
            hint = (
                "The server's certificate is not signed by a trusted authority. For a private server set "
                "ca_file to the PEM file of the CA that issued it (or SSL_CERT_FILE for the whole process); "
                "also check the system clock and the certificate's expiry. Verification is never disabled."
            )
        return SmtpPermanentError(f"The server's TLS certificate was not accepted: {reason}.", hint=hint)
    other = _find(exc, ssl.SSLError)
    if other is not None:
        return SmtpPermanentError(
            f"The TLS handshake failed: {other}.",
            hint=(
                "Check that security matches the port: ssl (implicit TLS) on 465, starttls on 587, "
                "and that the server supports TLS 1.2 or later."
            ),
        )
    return None


def error_from_exception(exc: BaseException, during: str, *, host: str = "", port: int = 0) -> SmtpError:
    """The typed error for an exception raised by aiosmtplib, the socket layer or ssl at stage ``during``.

    Raise the result ``from exc``.  Server replies keep their code; timeouts, disconnects and network errors
    are transient; certificate and handshake failures are permanent (they need a configuration change).
    """
    where = f"{host}:{port}" if host else "the SMTP server"
    if isinstance(exc, SmtpError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return error_from_reply(first.code, first.message, during="rcpt")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        return error_from_reply(exc.code, exc.message, during=during)
    tls = _tls_error(exc, host)
    if tls is not None:
        return tls
    if isinstance(exc, TimeoutError):  # includes SMTPTimeoutError and asyncio.TimeoutError
        return SmtpTransientError(
            f"Timed out talking to {where} ({_WHAT.get(during, during)}).",
            hint=(
                "Check host, port and security (port 465 needs ssl: a plain client waits forever for its "
                "greeting), and that a firewall allows outgoing connections to that port; if the server is "
                "slow, raise the timeout."
            ),
        )
    if _find(exc, socket.gaierror) is not None:
        return SmtpTransientError(
            f"Could not resolve the host name of {where}.",
            hint="Check the host name and the DNS configuration of this machine.",
        )
    if _find(exc, ConnectionRefusedError) is not None:
        return SmtpTransientError(
            f"The connection to {where} was refused.",
            hint="Nothing listens on that port: check host, port and security (587 starttls, 465 ssl).",
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return SmtpTransientError(
            f"{where} closed the connection unexpectedly ({_WHAT.get(during, during)}).",
            hint="The server or the network dropped the connection; the next attempt reconnects.",
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return SmtpPermanentError(f"The SMTP server lacks a required feature: {exc.message}", hint="")
    if isinstance(exc, OSError):  # includes SMTPConnectError
        return SmtpTransientError(f"Network error with {where}: {exc}", hint="Check connectivity to the server.")
    if isinstance(exc, aiosmtplib.SMTPException):
        return SmtpPermanentError(f"SMTP error with {where}: {exc.message}", hint="")
    return SmtpError(f"Unexpected error with {where}: {type(exc).__name__}", hint="")

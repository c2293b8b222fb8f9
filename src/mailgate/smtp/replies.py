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

_MS_SMTP_AUTH_DISABLED = (
    "SMTP AUTH is disabled for this Microsoft 365 mailbox or tenant. An Exchange administrator must enable it: "
    "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false (PowerShell), or in the "
    "Microsoft 365 admin centre: Users > the mailbox > Mail > Manage email apps > Authenticated SMTP "
    "(and check that Security defaults do not block it for the tenant)."
)
_MS_TOKEN_REJECTED = (
    "Microsoft rejected the access token. Check that the Username is the mailbox that granted consent "
    "(or one it may send as), that the app has the delegated permission https://outlook.office.com/SMTP.Send "
    "(re-authorize after adding it), and, for app-only tokens, that the service principal is registered in "
    "Exchange (New-ServicePrincipal, Add-MailboxPermission)."
)
_GMAIL_REJECTED = (
    "Google rejected the credentials. With OAuth, the Username must be exactly the Google account that "
    "granted consent, and the consent must include the scope https://mail.google.com/ (re-authorize if not). "
    "With a password, use an app password: Google refuses the account password over SMTP."
)


def one_line(text: str) -> str:
    """A multi-line reply text on one line (continuation lines joined with " | ")."""
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def enhanced_status(message: str) -> str:
    """The first RFC 3463 enhanced status code in a reply text (``"5.7.8"``), or ``""``."""
    match = _ENHANCED.search(message)
    return match.group(1) if match else ""


def _hint(code: int, status: str, message: str, during: str) -> str:
    if status == "5.7.139":
        return _MS_SMTP_AUTH_DISABLED
    if status == "5.7.3" or (status == "5.7.8" and during == "auth"):
        return _MS_TOKEN_REJECTED if status == "5.7.3" else _GMAIL_REJECTED
    if status == "5.5.127":
        return (
            "The access token was about to expire when it was used (Microsoft high-volume endpoint). "
            "Refresh tokens earlier: mailgate retries with a fresh token; if this persists, check the clock."
        )
    if code == 454 and during == "auth":
        return (
            "The server is throttling logins (Gmail: too many login attempts). Wait several minutes before "
            "connecting again, and keep connections open for several messages instead of logging in per message."
        )
    if code == 432 or status == "4.3.2":
        return (
            "Too many simultaneous connections for this mailbox (Microsoft 365 allows 3). Lower max_connections "
            "for the provider, or stop other programs sending from the same mailbox."
        )
    if status == "5.7.60" or "SendAsDenied" in message:
        return (
            "This account may not send as this sender address. Use the authenticated mailbox as the sender, "
            "or grant it Send As permission on the sender mailbox."
        )
    if status == "5.7.57" or (code == 530 and during in ("mail", "rcpt", "data")):
        return "The server requires authentication before sending: set Authentication to oauth (or password)."
    if code == 534:
        return (
            "The server wants a stronger sign-in (Gmail 5.7.9/5.7.14: an app password or OAuth). "
            "Use Authentication oauth."
        )
    if code == 538:
        return "The server requires an encrypted connection before AUTH: use security starttls (587) or ssl (465)."
    if code == 504 and during == "auth":
        return "The server does not support this authentication mechanism: check the host and Authentication."
    if code == 421:
        return "The server is closing the connection (shutting down or overloaded). Try again later."
    if code == 535 and during == "auth":
        return "The server rejected the credentials: check Username, and the password or the OAuth consent."
    if code == 550:
        if during == "rcpt":
            return "The recipient's mailbox does not exist or refuses mail: check the address."
        return "The server refused the message by policy: check the sender address and the reply text."
    if code == 552:
        return "The message is too large or the mailbox is full (Gmail: 25 MB, Microsoft 365: 35 MB by default)."
    if code == 553:
        if during == "mail":
            return "The sender address is not allowed for this account: use the mailbox you authenticate as."
        return "The recipient address is not valid: check its spelling."
    if code == 554:
        return "The server rejected the transaction (policy, spam filter or blocked account): read the reply text."
    if 400 <= code < 500:
        return "A temporary failure: the same message may be accepted later."
    return ""


def _error_class(code: int, status: str, during: str) -> type[SmtpError]:
    if during == "auth" and code in (530, 534, 535):
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
    return cls(
        f"The SMTP server refused {what}: {code} {text}".rstrip(),
        hint=_hint(code, status, text, during),
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

"""Replies and client exceptions become typed errors with hints."""

from __future__ import annotations

import socket
import ssl

import aiosmtplib
import pytest

from mailgate.errors import SmtpAuthenticationError, SmtpError, SmtpPermanentError, SmtpTransientError
from mailgate.smtp import error_from_exception, error_from_reply


@pytest.mark.parametrize(
    ("code", "text", "during", "cls", "hint_part"),
    [
        (535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
         "auth", SmtpAuthenticationError, "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled"),
        (535, "5.7.3 Authentication unsuccessful [SN4PR0501CA0046.namprd05.prod.outlook.com]",
         "auth", SmtpAuthenticationError, "SMTP.Send"),
        (535, "5.7.8 Username and Password not accepted.\n5.7.8 https://support.google.com/mail/?p=BadCredentials",
         "auth", SmtpAuthenticationError, "https://mail.google.com/"),
        (534, "5.7.9 Application-specific password required.", "auth", SmtpAuthenticationError, "app password"),
        (530, "5.7.0 Authentication Required.", "mail", SmtpPermanentError, "Authentication"),
        (454, "4.7.0 Too many login attempts, please try again later.", "auth", SmtpTransientError, "Wait"),
        (432, "4.3.2 Concurrent connections limit exceeded.", "auth", SmtpTransientError, "max_connections"),
        (501, "5.5.127 Token will expire soon", "auth", SmtpTransientError, "earlier"),
        (421, "4.7.0 Try again later, closing connection.", "mail", SmtpTransientError, "closing"),
        (550, "5.1.1 The email account that you tried to reach does not exist.", "rcpt", SmtpPermanentError, "mailbox"),
        (550, "5.7.60 SMTP; Client does not have permissions to send as this sender", "data", SmtpPermanentError,
         "Send As"),
        (552, "5.3.4 Message size exceeds fixed maximum message size", "data", SmtpPermanentError, "25 MB"),
        (553, "5.1.8 Sender address rejected", "mail", SmtpPermanentError, "sender address"),
        (554, "5.7.1 Message rejected as spam", "data", SmtpPermanentError, "policy"),
        (451, "4.3.0 Temporary failure", "data", SmtpTransientError, "temporary"),
        (538, "5.7.11 Encryption required", "auth", SmtpPermanentError, "starttls"),
    ],
)  # fmt: skip
def test_error_from_reply(code: int, text: str, during: str, cls: type[SmtpError], hint_part: str) -> None:
    err = error_from_reply(code, text, during=during)
    assert type(err) is cls
    assert err.reply_code == code and str(code) in err.message
    # What it means and what to do (mailgate.advice): the cause and the fix together.
    assert hint_part.lower() in f"{err.cause} {err.hint}".lower()
    assert err.hint and "\n" not in err.message
    assert err.retryable is issubclass(cls, SmtpTransientError)


def test_535_outside_auth_is_just_permanent() -> None:
    assert type(error_from_reply(535, "5.7.8 whatever", during="mail")) is SmtpPermanentError


def test_to_dict_keeps_the_reply() -> None:
    body = error_from_reply(550, "5.1.1 No such user", during="rcpt").to_dict()
    assert body["smtp_code"] == 550 and body["smtp_reply"] == "5.1.1 No such user"


@pytest.mark.parametrize(
    ("exc", "cls", "part"),
    [
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), SmtpTransientError, "closed the connection"),
        (aiosmtplib.SMTPReadTimeoutError("Timed out"), SmtpTransientError, "Timed out"),
        (TimeoutError(), SmtpTransientError, "Timed out"),
        (aiosmtplib.SMTPDataError(451, "4.3.0 later"), SmtpTransientError, "451"),
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.3 no"), SmtpAuthenticationError, "5.7.3"),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported"), SmtpPermanentError, "SMTPUTF8"),
        (ConnectionResetError(104, "reset"), SmtpTransientError, "Network error"),
    ],
)
def test_error_from_exception(exc: BaseException, cls: type[SmtpError], part: str) -> None:
    err = error_from_exception(exc, "auth", host="smtp.example.com", port=587)
    assert type(err) is cls
    assert part in err.message


def wrapped(cause: BaseException) -> aiosmtplib.SMTPConnectError:
    try:
        raise aiosmtplib.SMTPConnectError("Error connecting") from cause
    except aiosmtplib.SMTPConnectError as exc:
        return exc


def test_dns_failure_and_refused_connection() -> None:
    dns = error_from_exception(
        wrapped(socket.gaierror(-2, "Name or service not known")), "connect", host="smtp.example.com"
    )
    assert isinstance(dns, SmtpTransientError) and "host name" in dns.hint
    refused = error_from_exception(wrapped(ConnectionRefusedError(111, "refused")), "connect", host="h", port=1)
    assert isinstance(refused, SmtpTransientError) and "Nothing listens" in refused.hint


def certificate_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    err.verify_code, err.verify_message = code, message
    return err


def test_untrusted_certificate_is_permanent_with_a_ca_file_hint() -> None:
    err = error_from_exception(wrapped(certificate_error(20, "unable to get local issuer certificate")), "tls")
    assert isinstance(err, SmtpPermanentError) and not err.retryable
    assert "unable to get local issuer certificate" in err.message
    assert "ca_file" in err.hint and "SSL_CERT_FILE" in err.hint


def test_certificate_name_mismatch_hint() -> None:
    err = error_from_exception(
        certificate_error(62, "Hostname mismatch, certificate is not valid for '10.0.0.5'."), "tls", host="10.0.0.5"
    )
    assert isinstance(err, SmtpPermanentError)
    assert "not issued for the name '10.0.0.5'" in err.hint


def test_other_tls_failure_points_at_security_and_port() -> None:
    err = error_from_exception(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "connect")
    assert isinstance(err, SmtpPermanentError) and "465" in err.hint


def test_unknown_exceptions_are_not_retryable() -> None:
    err = error_from_exception(RuntimeError("boom"), "data")
    assert type(err) is SmtpError and not err.retryable

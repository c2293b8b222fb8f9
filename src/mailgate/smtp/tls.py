"""TLS for SMTP: the verifying client context, and a readable description of a session."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import stat
from datetime import UTC, datetime

import aiosmtplib

from ..errors import SmtpPermanentError

__all__ = [
    "CA_FILE_MAX_BYTES",
    "CaFileError",
    "certificate_expiry",
    "client_context",
    "describe_tls",
    "load_client_context",
    "read_ca_file",
]

#: The largest ``ca_file`` read: Mozilla's bundle of every public CA is about 220 KB as PEM.
CA_FILE_MAX_BYTES = 1024 * 1024

_WHAT_TO_DO = "Set ca_file to the PEM file of the CA that signed the server's certificate, or leave it empty."
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))  # fmt: skip


class CaFileError(ValueError):
    """``ca_file`` cannot be used; the message names the file, says why and what to do."""


def _check_regular(path: str, mode: int, size: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise CaFileError(f"{path} is {kind}, not a regular file. {_WHAT_TO_DO}")
    if size > CA_FILE_MAX_BYTES:
        raise CaFileError(
            f"{path} is {size:,} bytes, more than a CA file holds (at most {CA_FILE_MAX_BYTES:,}). {_WHAT_TO_DO}"
        )


def read_ca_file(path: str) -> bytes:
    """The content of ``path``, a regular file of at most :data:`CA_FILE_MAX_BYTES`, or :class:`CaFileError`.

    Never waits on the file: a FIFO, a device or a directory is refused after ``os.stat``, before it is
    opened; the open itself is non-blocking (a FIFO swapped in after the check cannot block either) and the
    opened file is checked again.  Blocking only as reading a small regular file is: call it in a thread.
    """
    try:
        info = os.stat(path)
        _check_regular(path, info.st_mode, info.st_size)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise CaFileError(f"{path} does not exist on the mailgate server. {_WHAT_TO_DO}") from exc
    except OSError as exc:
        raise CaFileError(f"{path} cannot be read ({exc.strerror}). {_WHAT_TO_DO}") from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        _check_regular(path, info.st_mode, info.st_size)
        data = file.read(CA_FILE_MAX_BYTES + 1)
    _check_regular(path, info.st_mode, len(data))  # it grew since fstat
    return data


def client_context(ca_file: str = "") -> ssl.SSLContext:
    """A context that verifies the server's certificate and host name (never disabled).

    With ``ca_file`` only the CAs of that PEM file are trusted (a private server's CA), read by
    :func:`read_ca_file` (:class:`CaFileError` when unusable); otherwise the default store, which honours
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` and the system store.  Blocking: file I/O, call it in a thread.
    """
    if not ca_file:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    data = read_ca_file(ca_file)
    if not data.strip():  # an empty cadata gives a context that trusts nothing, and no error
        raise CaFileError(f"{ca_file} is empty. {_WHAT_TO_DO}")
    try:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=data.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError, ValueError) as exc:
        raise CaFileError(f"{ca_file} holds no PEM certificate that can be loaded. {_WHAT_TO_DO}") from exc


async def load_client_context(ca_file: str) -> ssl.SSLContext:
    """:func:`client_context` in a thread; a ``ca_file`` that cannot be used is an SmtpPermanentError."""
    try:
        return await asyncio.to_thread(client_context, ca_file)
    except (OSError, ValueError) as exc:
        what = f": {exc}" if isinstance(exc, CaFileError) else f" {ca_file!r}: {exc}"
        raise SmtpPermanentError(
            f"Cannot load ca_file{what}",
            hint="ca_file must be a readable PEM file with the CA certificate(s) that signed the server's.",
        ) from exc


def _names(value: object) -> str:
    # getpeercert() gives subject/issuer as a tuple of RDNs, each a tuple of (key, value) pairs.
    if not isinstance(value, tuple):
        return "-"
    return ", ".join(f"{key}={val}" for rdn in value for key, val in rdn) or "-"


def describe_tls(smtp: aiosmtplib.SMTP) -> str:
    """Protocol version, cipher and the certificate's subject, names, issuer and expiry."""
    try:
        obj = smtp.get_transport_info("ssl_object")
    except aiosmtplib.SMTPServerDisconnected:
        obj = None
    if not isinstance(obj, ssl.SSLObject | ssl.SSLSocket):
        return "TLS established"
    cipher = obj.cipher()
    cert = obj.getpeercert() or {}
    alt = cert.get("subjectAltName", ())
    names = ", ".join(str(pair[1]) for pair in alt if isinstance(pair, tuple)) if isinstance(alt, tuple) else ""
    return (
        f"{obj.version()}, {cipher[0] if cipher else 'unknown cipher'}; certificate subject: "
        f"{_names(cert.get('subject'))}; names: {names or '-'}; issuer: {_names(cert.get('issuer'))}; "
        f"{_VALID_UNTIL}{cert.get('notAfter', '?')}"
    )


_VALID_UNTIL = "valid until "
# getpeercert()'s notAfter, e.g. "Jun  1 12:00:00 2027 GMT" (the form ssl.cert_time_to_seconds reads).
_NOT_AFTER = re.compile(re.escape(_VALID_UNTIL) + r"([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT)")


def certificate_expiry(description: str) -> datetime | None:
    """When the certificate of a :func:`describe_tls` description expires (UTC), or None if it does not say."""
    match = _NOT_AFTER.search(description)
    if match is None:
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(match.group(1)), UTC)

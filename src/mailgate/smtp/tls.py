"""TLS for SMTP: the verifying client context, and a readable description of a session."""

from __future__ import annotations

import ssl

import aiosmtplib

__all__ = ["client_context", "describe_tls"]


def client_context(ca_file: str = "") -> ssl.SSLContext:
    """A context that verifies the server's certificate and host name (never disabled).

    With ``ca_file`` only the CAs of that PEM file are trusted (a private server's CA); otherwise the default
    store, which honours ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` and the system store.  Blocking: file I/O.
    """
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)


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
        f"valid until {cert.get('notAfter', '?')}"
    )

"""The relay's TLS certificate: the configured one, or a self-signed one generated once in the data dir.

Applications are told to trust it by its SHA-256 fingerprint (printed at start, shown on the Relay page).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..config import RelaySettings
from ..errors import ConfigurationError

__all__ = ["CERT_FILE", "KEY_FILE", "RelayCertificate", "fingerprint", "load_certificate", "server_context"]

CERT_FILE = "relay-cert.pem"
KEY_FILE = "relay-key.pem"
#: Generated certificates are valid this long: they are trusted by fingerprint, not by expiry.
VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class RelayCertificate:
    cert_path: Path
    key_path: Path
    #: SHA-256 of the DER certificate, colon-separated upper-case hex (as openssl and msmtp print it).
    fingerprint: str
    generated: bool


def fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 fingerprint of the first certificate of a PEM file."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def _paths(relay: RelaySettings, data_dir: Path) -> tuple[Path, Path, bool]:
    if relay.tls_cert is not None and relay.tls_key is not None:
        return relay.tls_cert, relay.tls_key, False
    return data_dir / CERT_FILE, data_dir / KEY_FILE, True


def load_certificate(relay: RelaySettings, data_dir: Path, *, create: bool = True) -> RelayCertificate | None:
    """The certificate the relay serves.  The generated one is created on first use (``create``); None when
    it does not exist yet and ``create`` is false."""
    cert_path, key_path, generated = _paths(relay, data_dir)
    if generated and not cert_path.exists():
        if not create:
            return None
        _generate(cert_path, key_path, relay.host)
    try:
        pem = cert_path.read_bytes()
        return RelayCertificate(cert_path, key_path, fingerprint(pem), generated)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"The relay's TLS certificate {cert_path} cannot be read: {exc}",
            hint="Point MAILGATE_RELAY_TLS_CERT at a PEM certificate (unset both TLS variables to use a generated "
            "one).",
        ) from exc


def server_context(certificate: RelayCertificate) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later) with the relay's certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # One TLS 1.3 session ticket per handshake, not OpenSSL's two: a client that resumes (Postfix, Java, .NET
    # keep sessions) needs one per connection, as it gets a new one each time; most applications never resume,
    # and each ticket costs both ends CPU in every handshake.
    context.num_tickets = 1
    try:
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"The relay's TLS certificate {certificate.cert_path} or key {certificate.key_path} cannot be used: {exc}",
            hint="Check that both files are PEM, readable by mailgate, and that the key matches the certificate.",
        ) from exc
    return context


def _names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    extra = {socket.gethostname(), host} - {"", "0.0.0.0", "::", "localhost", "127.0.0.1", "::1"}  # noqa: S104 - names, not a bind
    for name in sorted(extra):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


def _generate(cert_path: Path, key_path: Path, host: str) -> None:
    # ECDSA P-256: a handshake costs the relay a fraction of RSA-2048's (every message of an application that
    # connects per message pays one).  A device whose TLS knows only RSA gets a configured certificate
    # (MAILGATE_RELAY_TLS_CERT / _KEY).
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailgate relay")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written under temporary names, then renamed, the certificate last: a reader that finds the certificate
    # finds its key (two processes starting at once each write a whole pair; the last one wins).
    suffix = f".{os.getpid()}.tmp"
    key_tmp, cert_tmp = key_path.with_name(key_path.name + suffix), cert_path.with_name(cert_path.name + suffix)
    try:
        fd = os.open(key_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
        cert_tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        os.replace(key_tmp, key_path)
        os.replace(cert_tmp, cert_path)
    finally:
        for leftover in (key_tmp, cert_tmp):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

"""App-only identities: signed JWT assertions (RFC 7515, RFC 7519, RFC 7523) and the token requests that use them.

- Microsoft client credentials with a certificate: a *client assertion* (RFC 7523 s.2.2, Microsoft's
  "certificate credentials" format): header ``alg`` RS256/PS256 with ``x5t#S256`` (and ``x5t``) naming the
  certificate; claims ``aud`` = the token URL, ``iss`` = ``sub`` = the client ID, ``jti``, ``nbf``, ``exp``.
- Google service account with domain-wide delegation: the *JWT bearer grant* (RFC 7523 s.2.1): ``iss`` = the
  service account's email, ``sub`` = the mailbox impersonated, ``scope``, ``aud`` = the token URL,
  ``exp`` <= ``iat`` + 3600 (shared/PROVIDERS.md).

Claims are built by pure functions; signing uses ``cryptography``.  Keys never appear in a repr.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..types import Grant, OAuthConfig

__all__ = [
    "ASSERTION_TYPE",
    "JWT_BEARER",
    "CertificateInfo",
    "ServiceAccountKey",
    "app_only_body",
    "client_assertion_claims",
    "load_certificate",
    "load_private_key",
    "parse_service_account_key",
    "service_account_claims",
    "sign_jwt",
]

#: RFC 7523 s.2.2: ``client_assertion_type`` of a JWT client assertion.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: RFC 7523 s.2.1: ``grant_type`` of the JWT bearer grant.
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Microsoft: a client assertion lives at most 10 minutes.
CLIENT_ASSERTION_LIFETIME = 600
#: Google: ``exp`` at most one hour after ``iat``.
SERVICE_ACCOUNT_ASSERTION_LIFETIME = 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class CertificateInfo:
    """What the OAuth page shows of an uploaded certificate (it is public; its private key is not)."""

    #: SHA-1 thumbprint in hex, as the Entra portal lists it under Certificates & secrets.
    thumbprint: str
    #: ``x5t`` and ``x5t#S256`` header values: base64url of the SHA-1 / SHA-256 of the DER certificate.
    x5t: str
    x5t_s256: str
    not_after: datetime
    subject: str


def load_certificate(pem: str) -> CertificateInfo:
    """The thumbprints and expiry of a PEM certificate; ValueError saying what is wrong."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise ValueError("is not a PEM certificate (-----BEGIN CERTIFICATE-----)") from exc
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertificateInfo(
        thumbprint=hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 - the x5t thumbprint is SHA-1 by definition
        x5t=_b64url(hashlib.sha1(der).digest()),  # noqa: S324
        x5t_s256=_b64url(hashlib.sha256(der).digest()),
        not_after=cert.not_valid_after_utc,
        subject=cert.subject.rfc4514_string(),
    )


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """An unencrypted PEM RSA private key (PKCS#8 or PKCS#1); ValueError saying what is wrong."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError as exc:
        raise ValueError("is encrypted: export it without a password (openssl pkey -in key.pem)") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError("is not a PEM private key (-----BEGIN PRIVATE KEY-----)") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("must be an RSA key (Microsoft and Google sign assertions with RS256)")
    return key


def key_matches_certificate(key_pem: str, certificate_pem: str) -> bool:
    """Whether the private key is the one of the certificate (its public key)."""
    public = load_private_key(key_pem).public_key().public_numbers()
    cert_key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
    return isinstance(cert_key, rsa.RSAPublicKey) and cert_key.public_numbers() == public


@dataclass(frozen=True)
class ServiceAccountKey:
    """The fields mailgate uses of a Google service account JSON key."""

    client_email: str
    #: The service account's numeric client ID: what the Admin console's domain-wide delegation lists.
    client_id: str
    private_key_id: str
    private_key: str = field(repr=False)


def parse_service_account_key(text: str) -> ServiceAccountKey:
    """A service account JSON key file (``"type": "service_account"``); ValueError saying what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("is not JSON: upload the key file downloaded from the Google Cloud console") from exc
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise ValueError('is not a service account key ("type": "service_account")')
    values = {name: data.get(name) for name in ("client_email", "client_id", "private_key_id", "private_key")}
    missing = [name for name, value in values.items() if not isinstance(value, str) or not value]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    load_private_key(str(values["private_key"]))
    return ServiceAccountKey(**{name: str(value) for name, value in values.items()})


def client_assertion_claims(client_id: str, token_url: str, *, now: int, jti: str) -> dict[str, Any]:
    """The claims of a Microsoft client assertion (RFC 7523 s.3; ``exp`` 10 minutes after ``nbf``)."""
    return {
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": jti,
        "iat": now,
        "nbf": now,
        "exp": now + CLIENT_ASSERTION_LIFETIME,
    }


def service_account_claims(
    client_email: str, mailbox: str, scopes: Sequence[str], token_url: str, *, now: int
) -> dict[str, Any]:
    """The claims of a Google service account assertion impersonating ``mailbox`` (domain-wide delegation)."""
    return {
        "iss": client_email,
        "sub": mailbox,
        "scope": " ".join(scopes),
        "aud": token_url,
        "iat": now,
        "exp": now + SERVICE_ACCOUNT_ASSERTION_LIFETIME,
    }


def sign_jwt(header: Mapping[str, Any], claims: Mapping[str, Any], private_key_pem: str) -> str:
    """A compact JWS (RFC 7515 s.7.1) signed with the RSA key, ``alg`` RS256 or PS256 from ``header``."""
    key = load_private_key(private_key_pem)
    alg = header.get("alg")
    signing_input = (
        _b64url(json.dumps(dict(header), separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
    ).encode("ascii")
    if alg == "RS256":
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256":
        # RFC 7518 s.3.5: salt length equal to the hash length.
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        signature = key.sign(signing_input, pss, hashes.SHA256())
    else:
        raise ValueError(f"unsupported JWS algorithm {alg!r}")
    return signing_input.decode("ascii") + "." + _b64url(signature)


def app_only_body(config: OAuthConfig, token_url: str, scopes: Sequence[str], *, now: datetime) -> dict[str, str]:
    """The token request of an app-only grant: client credentials (secret or signed assertion, RFC 6749
    s.4.4 / RFC 7523 s.2.2) or the JWT bearer grant of a service account (RFC 7523 s.2.1)."""
    moment = int(now.astimezone(UTC).timestamp())
    if config.grant is Grant.SERVICE_ACCOUNT:
        key = parse_service_account_key(config.service_account_key)
        claims = service_account_claims(key.client_email, config.mailbox, scopes, token_url, now=moment)
        header = {"alg": "RS256", "typ": "JWT", "kid": key.private_key_id}
        return {"grant_type": JWT_BEARER, "assertion": sign_jwt(header, claims, key.private_key)}
    body = {"grant_type": "client_credentials", "client_id": config.client_id, "scope": " ".join(scopes)}
    if config.private_key_pem and config.certificate_pem:
        cert = load_certificate(config.certificate_pem)
        header = {"alg": "RS256", "typ": "JWT", "x5t": cert.x5t, "x5t#S256": cert.x5t_s256}
        claims = client_assertion_claims(config.client_id, token_url, now=moment, jti=str(uuid.uuid4()))
        body["client_assertion_type"] = ASSERTION_TYPE
        body["client_assertion"] = sign_jwt(header, claims, config.private_key_pem)
    else:
        body["client_secret"] = config.client_secret
    return body

"""App-only identities at the sandbox's token endpoint: registered certificates and service accounts, and the
verification of the JWTs signed with them.

- Client assertions (RFC 7523 s.2.2, Microsoft's certificate credentials): the ``x5t#S256`` (or ``x5t``)
  header names a certificate registered for the client; RS256 or PS256 signature; ``iss`` = ``sub`` = the
  client ID; ``aud`` = the token URL; ``exp`` in the future, at most 10 minutes after ``nbf``; ``jti`` used once.
- The JWT bearer grant of a Google service account (RFC 7523 s.2.1): ``iss`` a registered service account whose
  key signed it (``kid``); ``aud`` = the token URL; ``exp`` <= ``iat`` + 3600; ``sub`` a known mailbox; every
  scope allowed by the domain-wide delegation, else ``unauthorized_client``.

The verification is written apart from mailgate's signing code on purpose: a shared bug would pass both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .problems import TokenError

__all__ = ["JWT_BEARER", "AppOnlyRegistry", "VerifiedBearer"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GMAIL_SCOPE = "https://mail.google.com/"
#: Microsoft refuses client assertions valid for longer than this (seconds).
MAX_ASSERTION_LIFETIME = 600
_CLOCK_SKEW = 300


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _self_signed(common_name: str) -> tuple[str, str]:
    """A new RSA key and a self-signed certificate for it (PEM, PEM), valid one year."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), _pem(key)


@dataclass(frozen=True)
class _Certificate:
    client_id: str
    x5t: str
    x5t_s256: str
    public_key: rsa.RSAPublicKey = field(repr=False)


@dataclass(frozen=True)
class _ServiceAccount:
    client_email: str
    client_id: str
    key_id: str
    public_key: rsa.RSAPublicKey = field(repr=False)
    #: The scopes the Admin console's domain-wide delegation allows for its client ID.
    scopes: frozenset[str]


@dataclass(frozen=True)
class VerifiedBearer:
    """A JWT bearer grant that passed: the mailbox impersonated and the scope granted."""

    account: str
    scope: str
    client_id: str


def _decode(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWS; ValueError when malformed."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWS compact serialization")
    try:
        header, claims = json.loads(_unb64(parts[0])), json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("undecodable JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("JWT header and claims must be objects")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def _signature_ok(key: rsa.RSAPublicKey, alg: object, signing_input: bytes, signature: bytes) -> bool:
    try:
        if alg == "RS256":
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256":
            key.verify(
                signature,
                signing_input,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _number(claims: dict[str, Any], name: str) -> int | None:
    value = claims.get(name)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _assertion_refused(code: int, text: str) -> TokenError:
    return TokenError("invalid_client", code, text, "Invalid client assertion.", status=401)


def _bearer_refused(text: str, error: str = "invalid_grant") -> TokenError:
    return TokenError(error, 50013, text, text, google_error=error)


class AppOnlyRegistry:
    """Certificates of app registrations, service accounts, known mailboxes, and the ``jti`` values seen."""

    def __init__(self, mailboxes: Iterable[str] = ()) -> None:
        self._certificates: dict[str, _Certificate] = {}
        self._service_accounts: dict[str, _ServiceAccount] = {}
        self.mailboxes: set[str] = {m.lower() for m in mailboxes}
        self._seen_jti: dict[str, float] = {}

    def __repr__(self) -> str:
        return (
            f"AppOnlyRegistry(certificates={len(self._certificates)}, service_accounts={len(self._service_accounts)})"
        )

    # --- registration -------------------------------------------------------------------------------------

    def register_certificate(self, client_id: str, certificate_pem: str = "") -> dict[str, str]:
        """Register a certificate for ``client_id`` (as uploaded under Certificates & secrets); without one, a new
        key pair is made and returned with it (test data)."""
        answer: dict[str, str] = {"client_id": client_id}
        if not certificate_pem:
            certificate_pem, answer["private_key_pem"] = _self_signed(f"{client_id} (mailgate sandbox)")
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        except ValueError as exc:
            raise ValueError("certificate_pem is not a PEM certificate") from exc
        public = cert.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError("the certificate must hold an RSA key")
        der = cert.public_bytes(serialization.Encoding.DER)
        sha1 = hashlib.sha1(der).digest()  # noqa: S324 - x5t is the SHA-1 thumbprint by definition
        entry = _Certificate(client_id, _b64(sha1), _b64(hashlib.sha256(der).digest()), public)
        self._certificates[entry.x5t_s256] = entry
        answer.update(certificate_pem=certificate_pem, thumbprint=sha1.hex().upper())
        return answer

    def register_service_account(
        self,
        *,
        client_email: str = "",
        scopes: Iterable[str] = (GMAIL_SCOPE,),
        mailboxes: Iterable[str] = (),
        public_key_pem: str = "",
        key_id: str = "",
    ) -> dict[str, str]:
        """Register a service account whose client ID may use ``scopes`` (domain-wide delegation), and make
        ``mailboxes`` known.  Without ``public_key_pem`` a key pair is made: the answer is then a complete JSON
        key file, as the Google Cloud console downloads it."""
        client_email = client_email or f"mailgate-{secrets.token_hex(3)}@sandbox-project.iam.gserviceaccount.com"
        client_id = str(int.from_bytes(hashlib.sha256(client_email.encode()).digest()[:8], "big"))
        key_id = key_id or secrets.token_hex(20)
        private_pem = ""
        if public_key_pem:
            public = serialization.load_pem_public_key(public_key_pem.encode())
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public, private_pem = private.public_key(), _pem(private)
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError("public_key_pem must be an RSA public key")
        self._service_accounts[client_email] = _ServiceAccount(
            client_email, client_id, key_id, public, frozenset(scopes)
        )
        self.mailboxes.update(m.lower() for m in mailboxes)
        answer = {
            "type": "service_account",
            "client_email": client_email,
            "client_id": client_id,
            "private_key_id": key_id,
        }
        if private_pem:
            answer.update(project_id="sandbox-project", private_key=private_pem, token_uri="http://sandbox/token")
        return answer

    # --- verification --------------------------------------------------------------------------------------

    def verify_client_assertion(self, form: dict[str, str], token_url: str, now: float) -> str:
        """The client ID a client assertion authenticates, or :class:`TokenError` (``invalid_client``)."""
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise TokenError.missing_parameter("client_assertion_type")
        try:
            header, claims, signing_input, signature = _decode(form.get("client_assertion", ""))
        except ValueError as exc:
            raise _assertion_refused(50027, f"Invalid JWT token: {exc}.") from exc
        cert = self._certificates.get(str(header.get("x5t#S256", ""))) or next(
            (c for c in self._certificates.values() if c.x5t == header.get("x5t")), None
        )
        client_id = str(claims.get("iss", ""))
        if cert is None or cert.client_id != client_id:
            raise _assertion_refused(
                700027,
                f"The certificate with identifier used to sign the client assertion is not registered on application "
                f"'{client_id}'.",
            )
        if not _signature_ok(cert.public_key, header.get("alg"), signing_input, signature):
            raise _assertion_refused(700027, "Client assertion failed signature validation.")
        if claims.get("sub") != client_id or (form.get("client_id") and form["client_id"] != client_id):
            raise _assertion_refused(700021, "Client assertion application identifier doesn't match 'client_id'.")
        if claims.get("aud") != token_url:
            raise _assertion_refused(
                50012, f"Client assertion audience claim does not match the token URL {token_url}."
            )
        exp, nbf = _number(claims, "exp"), _number(claims, "nbf")
        if exp is None or exp <= now or (nbf is not None and nbf > now + _CLOCK_SKEW):
            raise _assertion_refused(700024, "Client assertion is not within its valid time range.")
        if exp - (nbf if nbf is not None else now) > MAX_ASSERTION_LIFETIME + _CLOCK_SKEW:
            raise _assertion_refused(700024, "Client assertion lifetime is longer than 10 minutes.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _assertion_refused(50012, "Client assertion contains no jti.")
        self._seen_jti = {k: v for k, v in self._seen_jti.items() if v > now}
        if jti in self._seen_jti:
            raise _assertion_refused(50012, "The client assertion was already used (jti replay).")
        self._seen_jti[jti] = float(exp)
        return client_id

    def verify_bearer(self, assertion: str, token_url: str, now: float) -> VerifiedBearer:
        """The mailbox and scope of a service account's JWT bearer grant, or :class:`TokenError`."""
        if not assertion:
            raise TokenError.missing_parameter("assertion")
        try:
            header, claims, signing_input, signature = _decode(assertion)
        except ValueError as exc:
            raise _bearer_refused(f"Invalid JWT: {exc}") from exc
        account = self._service_accounts.get(str(claims.get("iss", "")))
        if account is None:
            raise _bearer_refused("Invalid grant: account not found")
        if header.get("alg") != "RS256" or not _signature_ok(account.public_key, "RS256", signing_input, signature):
            raise _bearer_refused("Invalid JWT Signature.")
        if claims.get("aud") != token_url:
            raise _bearer_refused(f"Invalid JWT: the audience must be the token URL {token_url}")
        iat, exp = _number(claims, "iat"), _number(claims, "exp")
        if iat is None or exp is None or exp - iat > 3600 or exp <= now or iat > now + _CLOCK_SKEW:
            raise _bearer_refused(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check "
                "your iat and exp values in the JWT claim."
            )
        sub = str(claims.get("sub", "")).lower()
        if not sub or sub not in self.mailboxes:
            raise _bearer_refused("Invalid email or User ID")
        scope = str(claims.get("scope", ""))
        if not scope or not set(scope.split()) <= account.scopes:
            raise _bearer_refused(
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized "
                "for any of the scopes requested.",
                "unauthorized_client",
            )
        return VerifiedBearer(account=sub, scope=scope, client_id=account.client_id)

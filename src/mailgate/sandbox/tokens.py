"""Token material: opaque random strings shaped like the real ones, PKCE and the id_token.  Pure functions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid

__all__ = [
    "ACCESS_TOKEN_MIN_LENGTH",
    "b64url",
    "id_token_claims",
    "make_access_token",
    "make_authorization_code",
    "make_id_token",
    "make_refresh_token",
    "pkce_s256",
]

#: Entra access tokens are JWTs of 1,500-2,500+ characters; SMTP servers and clients with a 512-byte
#: AUTH line limit break on them (shared/PROVIDERS.md), so the sandbox issues long ones on purpose.
ACCESS_TOKEN_MIN_LENGTH = 2100


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 s.2, RFC 7636 appendix A)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_s256(verifier: str) -> str:
    """``code_challenge`` for ``verifier`` with method S256: BASE64URL(SHA256(ASCII(verifier))) (RFC 7636
    s.4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())


def make_access_token() -> str:
    """An opaque bearer token, at least :data:`ACCESS_TOKEN_MIN_LENGTH` characters.

    The ``EwB`` prefix is what Microsoft consumer access tokens start with; the rest is random.
    """
    token = "EwB" + secrets.token_urlsafe(1600)
    assert len(token) >= ACCESS_TOKEN_MIN_LENGTH
    return token


def make_refresh_token() -> str:
    """An opaque refresh token (Entra's start with ``0.A``; Google's with ``1//``)."""
    return "0.A" + secrets.token_urlsafe(96)


def make_authorization_code() -> str:
    """A one-time authorization code (RFC 6749 s.4.1.2)."""
    return "M.C" + secrets.token_urlsafe(32)


def make_id_token(key: bytes, claims: dict[str, object]) -> str:
    """An OpenID Connect id_token: a JWT (RFC 7519) signed with HS256 by a sandbox-internal key.

    Clients read the claims without verifying the signature (they got the token straight from the token
    endpoint over TLS, OpenID Connect Core s.3.1.3.7 point 6), which is all mailgate does with it.
    """
    header = {"alg": "HS256", "typ": "JWT", "kid": "sandbox"}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def id_token_claims(
    *, issuer: str, client_id: str, account: str, tenant: str, nonce: str, now: int, lifetime: int
) -> dict[str, object]:
    """The claims of an id_token for ``account`` (OpenID Connect Core s.2, Entra v2.0 claim names)."""
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": client_id,
        # A pairwise subject, as Entra issues: stable per (client, account).
        "sub": b64url(hashlib.sha256(f"{client_id}|{account.lower()}".encode()).digest()),
        "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{account.lower()}")),
        "tid": tenant or "sandbox",
        "email": account,
        "email_verified": True,
        "preferred_username": account,
        "name": account.split("@", 1)[0],
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "ver": "2.0",
    }
    if nonce:
        claims["nonce"] = nonce
    return claims

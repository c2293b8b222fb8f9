"""PKCE (RFC 7636) and the one-time ``state`` value."""

from __future__ import annotations

import base64
import hashlib
import secrets

__all__ = ["code_challenge", "new_code_verifier", "new_state", "sha256_hex"]


def new_code_verifier() -> str:
    """43-128 characters of [A-Za-z0-9-._~] (RFC 7636 s.4.1): 64 random bytes, base64url -> 86 chars."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """``BASE64URL(SHA256(verifier))`` without padding: method S256 (RFC 7636 s.4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    return secrets.token_urlsafe(32)


def sha256_hex(value: str) -> str:
    """States and browser bindings are stored only as hashes: a database read does not replay a flow."""
    return hashlib.sha256(value.encode()).hexdigest()

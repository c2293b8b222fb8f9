"""Encryption of secrets at rest (client secrets, tokens, SMTP passwords).

Fernet (AES-128-CBC + HMAC-SHA256, authenticated).  The key comes from ``MAILGATE_SECRET_KEY`` (any
string, stretched with HKDF) or from a 0600 key file generated in the data dir on first start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigurationError

__all__ = ["KEY_FILE_NAME", "SecretBox", "load_or_create_key"]

KEY_FILE_NAME = "secret.key"


def _derive(key_material: str, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose: keys for different uses are independent (HKDF, RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"mailgate-secrets-v1", info=purpose).derive(
        key_material.encode()
    )


class SecretBox:
    """Encrypts and decrypts short strings, and makes keyed digests of secrets.  Holds the keys; never shows
    them."""

    def __init__(self, key_material: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(key_material, b"fernet")))
        self._mac_key = _derive(key_material, b"hmac-sha256")

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def digest(self, secret: str) -> str:
        """HMAC-SHA256 of ``secret`` under a key derived from mailgate's secret key (hex).

        For long random secrets (generated passwords): a fast keyed hash is enough, no slow KDF, since they
        cannot be guessed; keyed, so that a copy of the database alone does not allow checking guesses.
        Compare digests with ``hmac.compare_digest``.
        """
        return hmac.new(self._mac_key, secret.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii") if plaintext else ""

    def decrypt(self, token: str) -> str:
        if not token:
            return ""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken as exc:
            raise ConfigurationError(
                "A stored secret cannot be decrypted with the current key.",
                hint="MAILGATE_SECRET_KEY (or the data dir's secret.key) changed since the secret was saved: "
                "restore the old key, or enter the client secret again and re-authorize.",
            ) from exc


def load_or_create_key(data_dir: Path, configured: str) -> str:
    """The key material: ``configured`` when set, else the data dir's key file, created 0600 if missing."""
    if configured:
        return configured
    path = data_dir / KEY_FILE_NAME
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    # O_EXCL: two processes starting at once must not both write a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    return key

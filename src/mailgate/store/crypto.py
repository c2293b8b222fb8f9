"""Encryption of secrets at rest (client secrets, tokens, SMTP passwords).

Fernet (AES-128-CBC + HMAC-SHA256, authenticated).  The key comes from ``MAILGATE_SECRET_KEY`` (any
string, stretched with HKDF) or from a 0600 key file generated in the data dir on first start.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigurationError

__all__ = ["KEY_FILE_NAME", "SecretBox", "load_or_create_key"]

KEY_FILE_NAME = "secret.key"


class SecretBox:
    """Encrypts and decrypts short strings.  Holds the key; never shows it."""

    def __init__(self, key_material: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"mailgate-secrets-v1", info=b"fernet").derive(
            key_material.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

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

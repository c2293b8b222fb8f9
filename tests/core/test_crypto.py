import os
import stat
from pathlib import Path

import pytest

from mailgate.errors import ConfigurationError
from mailgate.store import SecretBox, load_or_create_key


def test_roundtrip_and_no_plaintext() -> None:
    box = SecretBox("key")
    token = box.encrypt("my-client-secret")
    assert "my-client-secret" not in token
    assert box.decrypt(token) == "my-client-secret"
    assert box.encrypt("") == "" and box.decrypt("") == ""
    assert "key" not in repr(box).replace("key hidden", "")


def test_wrong_key_gives_an_actionable_error() -> None:
    token = SecretBox("one").encrypt("x")
    with pytest.raises(ConfigurationError, match="MAILGATE_SECRET_KEY"):
        SecretBox("two").decrypt(token)


def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path, "")
    path = tmp_path / "secret.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(tmp_path, "") == key
    assert load_or_create_key(tmp_path, "configured") == "configured"

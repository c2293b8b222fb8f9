"""The data dir holds message bodies, tokens and the key: only mailgate's user may read it (issue 20, point 10)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.app import build_services
from mailgate.config import Settings
from mailgate.errors import ConfigurationError
from mailgate.store.files import private_data_dir

from ..conftest import ADMIN_PASSWORD


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems start processes with: files 0644, directories 0755 unless mailgate says otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _open_to_others(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` (itself included) that group or others may use, with its mode."""
    found = {}
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found[str(path.relative_to(root))] = oct(mode)
    return found


async def _start_and_write(data_dir: Path) -> None:
    """Start the services, write (the write-ahead log and shared memory exist while they are open), close."""
    services = await build_services(Settings(data_dir=data_dir, admin_password=ADMIN_PASSWORD))
    try:
        await services.admins.ensure_admin(ADMIN_PASSWORD)
        await services.admins.create_api_key("file modes")
        names = {p.name for p in data_dir.iterdir()}
        assert {"mailgate.db", "mailgate.db-wal", "mailgate.db-shm", "secret.key"} <= names, names
        assert _open_to_others(data_dir) == {}
    finally:
        await services.aclose()


async def test_a_fresh_data_dir_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    await _start_and_write(data_dir)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert _open_to_others(data_dir) == {}


async def test_an_existing_open_data_dir_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    await _start_and_write(data_dir)
    # What an older release left: everything readable by every local user.
    data_dir.chmod(0o755)
    for path in data_dir.iterdir():
        path.chmod(0o644)
    (data_dir / "notes.txt").write_text("an operator's file")
    assert _open_to_others(data_dir)
    with caplog.at_level(logging.WARNING, logger="mailgate.store.files"):
        await _start_and_write(data_dir)
    assert _open_to_others(data_dir) == {}
    assert stat.S_IMODE((data_dir / "mailgate.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    [warning] = [r.getMessage() for r in caplog.records if r.name == "mailgate.store.files"]
    assert "mailgate.db" in warning and "secret.key" in warning and str(data_dir) in warning


async def test_a_sqlite_database_outside_the_data_dir_is_private_too(tmp_path: Path) -> None:
    elsewhere = tmp_path / "db"
    elsewhere.mkdir()
    url = f"sqlite+aiosqlite:///{elsewhere / 'm.db'}"
    services = await build_services(Settings(data_dir=tmp_path / "data", database_url=url))
    try:
        await services.admins.create_api_key("file modes")
        assert (elsewhere / "m.db-wal").exists()
        assert _open_to_others(elsewhere) == {".": "0o755"}  # a directory of the operator's: not ours to change
    finally:
        await services.aclose()


def test_a_data_dir_that_cannot_be_used_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigurationError, match="MAILGATE_DATA_DIR") as caught:
        private_data_dir(tmp_path / "file")
    assert str(tmp_path / "file") in caught.value.message

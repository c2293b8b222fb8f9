"""File modes of the data dir: message bodies, tokens and the key must be readable by mailgate's user only.

The data dir is created 0700 and the SQLite database 0600 before SQLite opens it: SQLite gives the files it
creates next to a database (``-wal``, ``-shm``, ``-journal``) the database file's own mode, whatever the umask
(``robust_open`` in its Unix VFS), so a private database keeps its write-ahead log private too.  A data dir
written by an older release (0755, files 0644) is tightened at start, with a warning naming what changed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from ..errors import ConfigurationError

__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "private_data_dir", "private_sqlite_file"]

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: Mode bits that let other users read, write or enter.
_OTHERS = stat.S_IRWXG | stat.S_IRWXO
#: Files SQLite keeps next to a database.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` 0700 (its parents as the umask says), or make an existing one and its entries private.

    Only the directory and the entries directly in it that belong to this user are changed; a shared directory
    (sticky bit, like /tmp) is never changed itself: its files still are."""
    try:
        _private_data_dir(data_dir)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot use the data dir {data_dir}: {exc.strerror or exc}",
            hint="Point MAILGATE_DATA_DIR (or --data-dir) at a directory this user may create or write.",
        ) from exc


def _private_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True)
        return
    except FileExistsError:
        pass
    changed = []
    info = data_dir.stat()
    if not info.st_mode & stat.S_ISVTX and _tighten(data_dir, info):
        changed.append(".")
    with os.scandir(data_dir) as entries:
        for entry in entries:
            if not entry.is_symlink() and _tighten(Path(entry.path), entry.stat(follow_symlinks=False)):
                changed.append(entry.name)
    _report(data_dir, changed)


def private_sqlite_file(url: str) -> None:
    """Create the file of a SQLite ``url`` 0600 when it does not exist yet, else make it and its side files
    (write-ahead log, shared memory, journal) private.  Other databases and in-memory SQLite: nothing to do."""
    parsed = make_url(url)
    name = parsed.database or ""
    if not parsed.drivername.startswith("sqlite") or name in ("", ":memory:") or name.startswith("file:"):
        return
    path = Path(name)
    try:
        # O_EXCL: the file is created here, 0600, or was there already.  An empty file is an empty database.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
        return
    except FileExistsError:
        pass
    except FileNotFoundError:
        return  # no such directory: SQLite's own error ("unable to open database file") says so at connect
    changed = []
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_SIDE_FILES)):
        try:
            if _tighten(candidate, candidate.lstat()):
                changed.append(candidate.name)
        except FileNotFoundError:
            continue
    _report(path.parent, changed)


def _tighten(path: Path, info: os.stat_result) -> bool:
    """Remove the group and other bits of ``path`` (a regular file or directory of ours); whether it changed."""
    if info.st_uid != os.geteuid() or not info.st_mode & _OTHERS:
        return False
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        return False
    os.chmod(path, stat.S_IMODE(info.st_mode) & ~_OTHERS)
    return True


def _report(directory: Path, changed: list[str]) -> None:
    if changed:
        log.warning(
            "Made private (other users could read them): %s in %s; mailgate creates its data dir 0700 and its "
            "files 0600",
            ", ".join(sorted(changed)),
            directory,
        )

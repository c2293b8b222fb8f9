"""The delivery journal: on SQLite, a worker's ``sent`` results appended to a file of its own, then folded into
the outbox in batches.

A connection hands over its next message only once the previous message's result is recorded: that bounds
the duplicates after a crash to one message per connection.  Recording it as an UPDATE committed on its own
cost the worker about a fifth of its CPU per message (a transaction each: the row and three index pages
written to the write-ahead log), and the commit waited behind the API's batches, so the worker fell behind
while messages were being queued.  Appending a line to this journal is one ``write`` system call; it is in
the operating system's hands at once (kept if mailgate is killed), and the worker folds the lines into the
outbox in one transaction a few hundredths of a second later, or before its next claim.  Folded lines stay
in the file until it is worth emptying (TRUNCATE_BYTES): replaying them changes nothing.

Each worker holds an exclusive ``flock`` on its files while it runs.  A file nobody holds belongs to a
worker that died before folding it: the next claim of any worker on the same database replays it first
(the same UPDATE, which changes only a message still ``sending`` under that worker's lease: replaying a
line twice changes nothing), so that messages delivered by the dead worker are not claimed and sent again
once their lease runs out.  PostgreSQL workers may run on other hosts, which cannot read these files: they
record each result in the database (see Recorder).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["DeliveryJournal", "Entry", "Mark", "Orphan", "journal_directory"]

log = logging.getLogger(__name__)

#: The values of an entry that are times (written as ISO 8601 text).
_TIMES = ("sent_at", "updated_at")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Entry:
    """A message's result, as the UPDATE that records it needs it (see queue.finish)."""

    message_id: str
    owner: str
    values: dict[str, Any]

    def line(self) -> bytes:
        """The entry as one line of JSON (times in ISO 8601)."""
        values = {k: v.isoformat() if k in _TIMES and v is not None else v for k, v in self.values.items()}
        return json.dumps({"id": self.message_id, "owner": self.owner, "values": values}).encode() + b"\n"

    @classmethod
    def parse(cls, line: bytes) -> Entry:
        """The entry of a :meth:`line`; ValueError, KeyError or TypeError when it is not one."""
        data = json.loads(line)
        values = dict(data["values"])
        for key in _TIMES:
            if values.get(key) is not None:
                values[key] = datetime.fromisoformat(values[key])
        return cls(str(data["id"]), str(data["owner"]), values)


@dataclass
class Orphan:
    """The files of a worker that died before folding them (locked by the caller until :meth:`discard`)."""

    path: Path
    fd: int
    entries: list[Entry]

    def discard(self) -> None:
        """Delete the file (its entries are in the outbox now) and release it."""
        _delete(self.path, self.fd)

    def release(self) -> None:
        """Keep the file for a later replay (the replay failed)."""
        os.close(self.fd)


def journal_directory(database_file: str) -> Path | None:
    """Where the journals of a SQLite database file go (beside it, like its ``-wal``); None in memory."""
    if not database_file or database_file == ":memory:" or database_file.startswith("file::memory:"):
        return None
    return Path(f"{database_file}-deliveries")


@dataclass(eq=False)
class _File:
    """A journal file this worker writes (locked), and how many bytes it holds."""

    path: Path
    fd: int
    size: int = 0


#: The lines folded into the outbox stay in the file until it holds this many bytes: replaying them changes
#: nothing, and emptying the file at every fold cost a system call or two each time.
TRUNCATE_BYTES = 64 * 1024
#: When results keep arriving while a fold commits (the file is never found with nothing new), appends move
#: to a new file past this size, and the old one is deleted once folded.
ROTATE_BYTES = 1024 * 1024

#: What a fold covers: each file, with its size when the fold took its lines.
Mark = list[tuple[_File, int]]


class DeliveryJournal:
    """One worker's journal: ``append`` results; ``mark`` what a fold takes, ``folded`` once it is committed.
    Opened at the first append; ``close`` deletes the files once everything appended is folded."""

    def __init__(self, directory: Path, owner: str) -> None:
        self.directory = directory
        self.owner = owner
        self._prefix = _UNSAFE.sub("_", owner)
        self._current: _File | None = None
        #: Earlier files, full, with lines not folded yet (still locked).
        self._sealed: list[_File] = []
        self._sequence = 0
        #: The directory could not be listed last time (said once).
        self._unlistable = False

    def __repr__(self) -> str:
        return f"DeliveryJournal({str(self.directory)!r}, owner={self.owner!r})"

    @property
    def paths(self) -> list[Path]:
        """This worker's files."""
        return [f.path for f in self._files()]

    def append(self, entry: Entry) -> None:
        """Write ``entry`` (one ``write``: in the operating system's hands when this returns).  Raises OSError
        when it cannot: the entry is not in the journal (record it another way).  Later entries go to a new
        file, after no part of a line."""
        if self._current is None:
            self._current = self._open()
        current = self._current
        line = entry.line()
        try:
            written = os.write(current.fd, line)
            if written != len(line):  # a full disk: the rest did not fit
                raise OSError(errno.ENOSPC, f"could not write all of a line to {current.path}")
        except OSError:
            self._sealed.append(current)
            self._current = None
            current.size = os.fstat(current.fd).st_size
            raise
        current.size += written

    def mark(self) -> Mark:
        """What the lines appended so far are in, for :meth:`folded` once they are in the outbox."""
        mark = [(f, f.size) for f in self._sealed]
        if self._current is not None:
            mark.append((self._current, self._current.size))
            if self._current.size >= ROTATE_BYTES:
                self._sealed.append(self._current)
                self._current = None
        return mark

    def folded(self, mark: Mark) -> None:
        """The lines of ``mark`` are in the outbox: delete the full files, empty the current one when it has
        nothing newer and is large enough to be worth it."""
        for file, size in mark:
            if file in self._sealed:
                self._sealed.remove(file)
                _delete(file.path, file.fd)
            elif file is self._current and file.size == size and size >= TRUNCATE_BYTES:
                os.ftruncate(file.fd, 0)  # appends (O_APPEND) start again at 0
                file.size = 0

    def close(self) -> None:
        """Delete this worker's files: call once everything appended is folded."""
        for file in self._files():
            _delete(file.path, file.fd)
        self._sealed, self._current = [], None

    def orphans(self) -> Iterator[Orphan]:
        """The files of workers that are gone (nobody holds their lock), each locked until discarded; a file
        that cannot be read is left alone (logged)."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        except OSError as exc:
            # Nothing can have been written there either (see Recorder.sent): said once.
            if not self._unlistable:
                log.warning("cannot read the delivery journals' directory: %s", exc)
            self._unlistable = True
            return
        self._unlistable = False
        own = {path.name for path in self.paths}
        for name in names:
            if not name.endswith(".jsonl") or name in own:
                continue
            path = self.directory / name
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # folded and deleted meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its worker is alive
                continue
            try:
                entries = _read(fd, path)
            except OSError as exc:
                os.close(fd)
                log.warning("could not read the delivery journal %s: %s", path, exc)
                continue
            yield Orphan(path, fd, entries)

    def _files(self) -> list[_File]:
        return [*self._sealed, *([self._current] if self._current else [])]

    def _open(self) -> _File:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sequence += 1
        path = self.directory / f"{self._prefix}.{self._sequence}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        return _File(path, fd)


def _delete(path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.close(fd)


def _read(fd: int, path: Path) -> list[Entry]:
    with os.fdopen(os.dup(fd), "rb") as file:
        data = file.read()
    entries = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(Entry.parse(line))
        except (ValueError, KeyError, TypeError) as exc:
            # A line cut short by a power failure: its message may be sent again (it was not on the disk).
            log.warning("delivery journal %s, line %d unreadable, skipped: %s", path, number, exc)
    return entries

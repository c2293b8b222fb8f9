"""A named pipe that notices when anything opens it for reading, and frees that reader.

Opening a FIFO for reading blocks until a writer comes: code that opens a ``ca_file`` naming one hangs
(on the event loop: the whole server).  The watcher thread polls with a non-blocking open for writing,
which succeeds only while a reader has the FIFO open (or is blocked opening it); it then records that and
closes at once, so the reader sees end of file and the test ends instead of hanging.  No pytest in here.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["WatchedFifo"]


class WatchedFifo:
    """``with WatchedFifo(path) as fifo: ...`` then ``fifo.opened``: whether anything opened it to read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fifo-watch", daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader
                continue
            self.opened = True
            os.close(fd)

    def __enter__(self) -> Self:
        os.mkfifo(self.path)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

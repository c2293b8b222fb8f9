"""The worker's doorbell: when an idle worker looks for newly queued messages again.

A message queued by the worker's own process rings it at once.  One queued by another process (``mailgate
serve --no-worker`` feeding ``mailgate worker``, on this host or others) rings it too:

- SQLite: within CHECK_SECONDS, from ``PRAGMA data_version``, which changes when another connection commits to
  the database file: it reads the database's shared memory, not the database, so checking often costs next
  to nothing;
- PostgreSQL: the queueing process sends ``NOTIFY mailgate_outbox`` after its commit (at most one per
  CHECK_SECONDS: the messages queued meanwhile share the next one), and idle workers ``LISTEN`` on a
  connection of their own.

The worker's poll (``MAILGATE_OUTBOX_POLL_SECONDS``) remains for what rings nothing: retries coming due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from ..store import Database

__all__ = ["CHANNEL", "CHECK_SECONDS", "Doorbell"]

log = logging.getLogger(__name__)

#: The PostgreSQL notification channel.
CHANNEL = "mailgate_outbox"

#: How often a waiting worker checks a SQLite database for commits by other processes.
CHECK_SECONDS = 0.02


class Doorbell:
    """``ring()`` when a message is queued; ``await wait(seconds)`` returns once one may have been queued."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._postgres = db.engine.dialect.name == "postgresql"
        database = db.engine.url.database if db.is_sqlite else None
        #: The database file, watched for other processes' commits (not an in-memory database).
        self._path = database if database and database != ":memory:" else None
        self._event: asyncio.Event | None = None
        self._watch: sqlite3.Connection | None = None
        #: PostgreSQL: the NOTIFY being sent (and whether another is due after it), the LISTEN connection.
        self._announcing: asyncio.Task[None] | None = None
        self._again = False
        self._listener: Any = None

    @property
    def _rung(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def ring(self) -> None:
        """A message was queued (committed): this process's worker, and on PostgreSQL the others, look."""
        self._rung.set()
        if self._postgres:
            if self._announcing is None:
                self._announcing = asyncio.create_task(self._announce())
            else:
                self._again = True

    def interrupt(self) -> None:
        """Return from ``wait`` now (the worker is stopping); nothing is announced to other processes."""
        self._rung.set()

    def clear(self) -> None:
        """Before looking for work: a ring from now on means something new."""
        self._rung.clear()

    async def wait(self, seconds: float) -> None:
        """Until a ring since ``clear()``, another process's commit (SQLite), or ``seconds``."""
        rung = self._rung
        if self._postgres and await self._listen():
            await self._until(seconds, self._notified)
            return
        seen = self._version() if self._path is not None else None
        if seen is None:  # nothing to watch (or it cannot be read): the ring, or the time is up
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rung.wait(), seconds)
            return

        async def changed(step: float) -> bool:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rung.wait(), step)
            return self._version() != seen

        await self._until(seconds, changed)

    async def _until(self, seconds: float, heard: Callable[[float], Awaitable[bool]]) -> None:
        """Until a ring, ``seconds``, or ``heard(step)`` (which waits at most ``step``, CHECK_SECONDS at a
        time) says another process queued something."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._rung.is_set() and (left := deadline - loop.time()) > 0:
            if await heard(min(CHECK_SECONDS, left)):
                return

    async def close(self) -> None:
        self._close_watch()
        if self._announcing is not None:
            with contextlib.suppress(Exception):
                await self._announcing
        await self._close_listener()

    # -- PostgreSQL --------------------------------------------------------------------------------------

    async def _announce(self) -> None:
        try:
            while True:
                self._again = False
                async with self._db.engine.connect() as connection:
                    await connection.exec_driver_sql(f"NOTIFY {CHANNEL}")
                    await connection.commit()
                # At most one per CHECK_SECONDS: under a stream of messages the workers are busy anyway, and
                # one notification each costs the queueing process a transaction.
                await asyncio.sleep(CHECK_SECONDS)
                if not self._again:
                    return
        except Exception as exc:  # the workers' poll still finds the message
            log.warning("could not notify the outbox workers (they find the message by polling): %s", exc)
        finally:
            self._announcing = None

    async def _listen(self) -> bool:
        """A connection listening on CHANNEL (made on first use); False when the database cannot be reached."""
        if self._listener is not None and not self._listener.closed:
            return True
        import psycopg  # PostgreSQL only

        url = self._db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            self._listener = await psycopg.AsyncConnection.connect(url, autocommit=True)
            await self._listener.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            log.warning("could not listen for queued messages (polling instead): %s", exc)
            await self._close_listener()
            return False
        return True

    async def _notified(self, step: float) -> bool:
        """Whether a notification came within ``step`` seconds (a wait on the socket, nothing sent); a broken
        listening connection counts as one (it is made again on the next wait)."""
        import psycopg

        try:
            async for _ in self._listener.notifies(timeout=step, stop_after=1):
                return True
        except psycopg.Error as exc:
            log.warning("stopped listening for queued messages (will listen again): %s", exc)
            await self._close_listener()
            return True
        return False

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close()

    def _close_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    def _version(self) -> int | None:
        """The database's data_version as this connection sees it; None when it cannot be read (the caller
        then looks for work, as if it had changed)."""
        try:
            if self._watch is None:
                assert self._path is not None
                # Never waits for a lock (busy timeout 0) and never writes: it only reads shared memory.
                self._watch = sqlite3.connect(self._path, timeout=0, isolation_level=None)
            row = self._watch.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            self._close_watch()
            return None
        return int(row[0])

"""Group commit: the outbox's writes in this process, one transaction at a time, shared by concurrent callers.

Writes that arrive while a transaction commits go together in the next one (one disk sync for all of them).
Every caller still returns only once its own writes are committed, so "202 only after the message is
committed" and "a delivery is recorded before its connection hands over the next message" hold as if each
caller had a transaction of its own.  A batch that fails is committed again caller by caller, so that only
the caller whose write failed (a duplicate Idempotency-Key, say) gets the error.

Writes made with ``sync=False`` (a delivery's result, a worker's claim, retention) do not wait for the disk:
they are committed, for every reader, and kept if mailgate crashes or is killed; only a power failure or an
operating-system crash right after can undo them, and then those messages are sent again, none lost.  On
SQLite they go through connections of their own with ``PRAGMA synchronous=NORMAL``; on PostgreSQL their
transaction has ``SET LOCAL synchronous_commit TO OFF``.  Every other write is on the disk when its caller
resumes (SQLite: ``synchronous=FULL``, see :func:`mailgate.store.db.sqlite_pragmas`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Executable, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..store import Database
from ..store.db import sqlite_pragmas

__all__ = ["GroupCommit", "Write"]

T = TypeVar("T")
#: A statement and its parameters; the caller gets the number of rows it changed.
Write = tuple[Executable, Mapping[str, Any]]
_Pending = tuple[list[Write], "asyncio.Future[list[int]]"]
#: Keep the row count of every statement (SQLAlchemy does not report an INSERT's on every driver otherwise).
_COUNTED = {"preserve_rowcount": True}


class GroupCommit:
    """``await group.execute(statement, params)`` (or ``execute_all``: one caller's writes, all or none) and
    ``await group.transaction(work)``, in this process's outbox transactions, one at a time."""

    def __init__(self, db: Database) -> None:
        self._db = db
        #: Writes waiting for a transaction, by ``sync``.
        self._waiting: dict[bool, list[_Pending]] = {True: [], False: []}
        self._lock: asyncio.Lock | None = None
        #: SQLite: the engine of the writes that do not wait for the disk (made on first use).
        self._unsynced: AsyncEngine | None = None

    def __repr__(self) -> str:
        return f"GroupCommit({self._db!r}, waiting={sum(map(len, self._waiting.values()))})"

    @property
    def lock(self) -> asyncio.Lock:
        """Held while a transaction of the outbox commits: on SQLite, two at once would make one of them wait
        in SQLite's busy handler, which sleeps."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def execute(self, statement: Executable, params: Mapping[str, Any], *, sync: bool = True) -> int:
        """Execute and commit; the number of rows changed, once committed (with ``sync``, on the disk)."""
        return (await self.execute_all([(statement, params)], sync=sync))[0]

    async def execute_all(self, writes: Sequence[Write], *, sync: bool = True) -> list[int]:
        """Several writes, in order, all committed or none; the number of rows each changed."""
        pending: _Pending = (list(writes), asyncio.get_running_loop().create_future())
        waiting = self._waiting[sync]
        waiting.append(pending)
        try:
            while not pending[1].done():
                async with self.lock:
                    if pending[1].done():
                        break
                    # The writes that do not wait for the disk first: a connection waits for its record.
                    kind = not self._waiting[False]
                    batch, self._waiting[kind] = self._waiting[kind], []
                    await self._commit(batch, sync=kind)
        except asyncio.CancelledError:
            if pending in waiting:
                waiting.remove(pending)  # not written: the caller is gone before its turn
            raise
        return pending[1].result()

    async def transaction(self, work: Callable[[Connection], T], *, sync: bool = True) -> T:
        """``work(connection)``, synchronous code on a Core connection, in a transaction of its own, committed
        (in turn with the batches)."""
        async with self.lock, self._begin(sync) as connection:
            return await connection.run_sync(work)

    async def close(self) -> None:
        """Close the connections of the writes that do not wait for the disk."""
        if self._unsynced is not None:
            await self._unsynced.dispose()
            self._unsynced = None

    async def _commit(self, batch: list[_Pending], *, sync: bool) -> None:
        try:
            counts = []
            async with self._begin(sync) as connection:
                for writes, _ in batch:
                    for statement, params in writes:
                        result = await connection.execute(statement, dict(params), execution_options=_COUNTED)
                        counts.append(int(result.rowcount))
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for pending in batch:  # only the caller whose write failed gets the error
                await self._commit([pending], sync=sync)
            return
        except BaseException as exc:  # cancelled while committing: nobody knows whether it was written
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            raise
        each = iter(counts)
        for writes, future in batch:
            future.set_result([next(each) for _ in writes])

    @asynccontextmanager
    async def _begin(self, sync: bool) -> AsyncIterator[AsyncConnection]:
        engine = self._db.engine if sync or not self._db.is_sqlite else self._unsynced_engine()
        async with engine.begin() as connection:
            if not sync and not self._db.is_sqlite:
                # For this transaction only, even through a pooler such as PgBouncer in transaction mode.
                await connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield connection

    def _unsynced_engine(self) -> AsyncEngine:
        if self._unsynced is None:
            self._unsynced = create_async_engine(self._db.engine.url)
            event.listen(self._unsynced.sync_engine, "connect", _sqlite_unsynced)
        return self._unsynced


def _sqlite_unsynced(dbapi_connection: Any, record: Any) -> None:
    """SQLite: mailgate's settings, with commits written to the write-ahead log without a disk sync (kept if
    the process dies; synced by the next commit with ``synchronous=FULL`` or by a checkpoint)."""
    sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()

"""Group commit: writes submitted at the same time share one transaction (and one disk sync).

Every caller still returns only after its own write is committed, so "202 only after commit" and "a
delivery is recorded before the connection hands over its next message" hold; concurrent callers (API
requests, a worker's connections) just stop paying one transaction each.

On SQLite a batch runs in one call to a dedicated writer thread with the synchronous driver: one hand-off
per batch instead of one per statement, commit and reset (aiosqlite's way), whose wake-ups add up to
milliseconds in a busy event loop.  Elsewhere (PostgreSQL) it runs on the async engine.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, create_engine, event

from ..store import Database
from ..store.db import sqlite_pragmas

__all__ = ["GroupCommit"]

T = TypeVar("T")
#: A statement and its parameters; the caller gets the number of rows it changed.
Write = tuple[Executable, Mapping[str, Any]]


class GroupCommit:
    """Runs ``await group.execute(statement, params)`` writes in shared transactions, one batch at a time."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[Write, asyncio.Future[int]]] = []
        self._lock: asyncio.Lock | None = None
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None

    @property
    def lock(self) -> asyncio.Lock:
        """Held while a batch commits.  Other write transactions of this process on the outbox take it too:
        on SQLite, two of them at once would make one wait in SQLite's busy handler (sleeping)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def execute(self, statement: Executable, params: Mapping[str, Any]) -> int:
        """Execute and commit; the number of rows changed, once committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(((statement, params), future))
        async with self.lock:
            if not future.done():
                # Everything queued while the previous batch was committing goes in this one.
                batch, self._pending = self._pending, []
                await self._commit(batch)
        return future.result()

    async def transaction(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in a transaction of its own, committed; synchronous code on a Core connection
        (on SQLite in the writer thread, in turn with the batches; elsewhere through ``run_sync``)."""
        async with self.lock:
            return await self._in_transaction(work)

    async def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._sync is not None:
            self._sync.dispose()
            self._sync = None

    async def _commit(self, batch: list[tuple[Write, asyncio.Future[int]]]) -> None:
        writes = [write for write, _ in batch]
        try:
            counts = await self._in_transaction(functools.partial(_execute_all, writes))
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            # One of them failed (e.g. a duplicate Idempotency-Key): commit each on its own, so that only
            # that one fails.
            for item in batch:
                await self._commit([item])
            return
        except BaseException as exc:  # cancelled while committing: nobody knows whether it was written
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            raise
        for (_, future), count in zip(batch, counts, strict=True):
            future.set_result(count)

    async def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        # The one way both batches and transaction() reach the database (the caller holds the lock).
        if not self._db.is_sqlite:
            async with self._db.engine.begin() as connection:
                return await connection.run_sync(work)
        return await asyncio.get_running_loop().run_in_executor(self._writer(), _transaction, self._engine(), work)

    def _engine(self) -> Engine:
        if self._sync is None:
            self._sync = create_engine(self._db.engine.url.set(drivername="sqlite"))
            event.listen(self._sync, "connect", sqlite_pragmas)
        return self._sync

    def _writer(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="mailgate-outbox-writes")
        return self._thread


#: Keep the row count of every statement (SQLAlchemy drops an INSERT's on some drivers otherwise).
_COUNTED = {"preserve_rowcount": True}


def _execute_all(writes: list[Write], connection: Connection) -> list[int]:
    return [
        int(connection.execute(statement, dict(params), execution_options=_COUNTED).rowcount)
        for statement, params in writes
    ]


def _transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.begin() as connection:
        return work(connection)

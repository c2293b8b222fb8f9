"""Group commit: the outbox's writes in this process, one transaction at a time, shared by concurrent callers.

Writes that arrive while a transaction commits go together in the next one; each caller returns once its own
writes are committed (a failed batch is retried caller by caller, so only the failing caller gets the error).
``sync=False`` writes (results, claims, retention) do not wait for the disk: they survive a crash of mailgate,
and only a power failure right after can undo them (those messages are then sent again, none lost).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, create_engine, event

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
        #: Held while a transaction of the outbox commits (one at a time).
        self.lock = asyncio.Lock()
        #: SQLite: a synchronous engine and the one thread its transactions run in, made on first use.
        self._engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None

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
        async with self.lock:
            return await self._run(work, sync=sync)

    async def close(self) -> None:
        """Close SQLite's connections and thread for the outbox's writes."""
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    async def _commit(self, batch: list[_Pending], *, sync: bool) -> None:
        try:
            counts = await self._run(functools.partial(_execute, [w for writes, _ in batch for w in writes]), sync=sync)
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

    async def _run(self, work: Callable[[Connection], T], *, sync: bool) -> T:
        """``work`` in a transaction, committed (the caller holds the lock)."""
        if not self._db.is_sqlite:
            async with self._db.engine.begin() as connection:
                if not sync:
                    # For this transaction only, even through a pooler such as PgBouncer in transaction mode.
                    await connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                return await connection.run_sync(work)
        if self._engine is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="mailgate-outbox-writes")
            self._engine = create_engine(self._db.engine.url.set(drivername="sqlite"))
            event.listen(self._engine, "connect", sqlite_pragmas)
        call = functools.partial(_in_transaction, self._engine, work, sync)
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)


def _in_transaction(engine: Engine, work: Callable[[Connection], T], sync: bool) -> T:
    with engine.begin() as connection:
        # Before the transaction's first write (the driver begins it then): how this commit meets the disk.
        connection.exec_driver_sql(_SYNCED if sync else _UNSYNCED)
        return work(connection)


#: SQLite: mailgate's setting (sqlite_pragmas), and commits that do not wait for the disk.
_SYNCED, _UNSYNCED = "PRAGMA synchronous=FULL", "PRAGMA synchronous=NORMAL"


def _execute(writes: list[Write], connection: Connection) -> list[int]:
    """Each write's row count."""
    return [
        int(connection.execute(statement, dict(params), execution_options=_COUNTED).rowcount)
        for statement, params in writes
    ]

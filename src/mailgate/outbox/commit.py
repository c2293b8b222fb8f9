"""Group commit: writes submitted at the same time share one transaction (and one disk sync).

Every caller still returns only after its own write is committed, so "202 only after commit" and "a
delivery is recorded before the connection hands over its next message" hold; concurrent callers (API
requests, a worker's connections) just stop paying one transaction each.

On SQLite a batch is written on the event loop's own thread with the synchronous driver, on a connection of
its own, and committed without a disk sync (``synchronous=NORMAL``: into the write-ahead log); a batch that
must be on the disk then waits for a dedicated writer thread to sync the log.  So SQLite's write lock, which
every other writer (another process too) waits for, is held for the writes, not through the disk sync, and
SQLite's part of a batch (a few hundredths of a millisecond) does not pay for a hand-off to a thread and
back (futex wake-ups, context switches, the GIL changing hands), which cost the worker a quarter of its CPU
per message when each delivery's record went through the thread.  A worker's claim (``transaction(...,
sync=False)``) runs there too, on the same connection.  Their statements go to the DBAPI cursor
(:mod:`.cursor`).  When another process holds the write lock, the writer thread waits for it instead of
the event loop.  Elsewhere (PostgreSQL) batches run on the async engine.

Writes made with ``sync=False`` (a delivery's record, which its SMTP connection waits for before it hands
over its next message) go first, and their commit does not wait for the disk: it is in the database, for
every reader, and kept if mailgate crashes or is killed, and it reaches the disk within SYNC_DELAY seconds
(SQLite: the write-ahead log synced by a timer; PostgreSQL: ``synchronous_commit=off``, flushed by the
server's WAL writer).  Only a power failure or an operating system crash in between loses such records:
those messages are then sent again.  A worker's claims are committed the same way (``transaction(...,
sync=False)``): losing one only puts its messages back in the queue.  Every other write (a message
accepted with 202) is on the disk when its caller resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from ..store import Database
from ..store.db import sqlite_pragmas
from . import pgwrite
from .cursor import write_plan

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Seconds within which a write committed with ``sync=False`` is on the disk (PostgreSQL: its WAL writer
#: flushes within three times wal_writer_delay, 0.6 s by default).
SYNC_DELAY = 0.05
#: SQLite: the first pause before trying again while another process holds the write lock, the longest
#: (pauses double), and how long to keep trying (then the batch goes through SQLAlchemy, whose connections
#: wait in SQLite's busy handler, 30 s).
BUSY_PAUSE = 0.0001
BUSY_PAUSE_MAX = 0.002
BUSY_LIMIT = 30.0
#: SQLite: the writer thread checkpoints the write-ahead log into the database after this many commits of
#: the writer's connection (SQLite's own automatic checkpoint, every 1,000 pages, would run in the commit
#: that crosses the line: on the event loop's thread, with two disk syncs).
CHECKPOINT_COMMITS = 100
#: ... or once message bodies of this many bytes were written since the last one (a hundred commits of large
#: messages would grow the log by gigabytes; after a checkpoint SQLite truncates it, see store.db.WAL_SIZE_LIMIT).
CHECKPOINT_BYTES = 32 * 1024 * 1024

#: A statement and its parameters; the caller gets the number of rows it changed.
Write = tuple[Executable, Mapping[str, Any]]
#: A batch: each caller's writes, with the future of their row counts.
Batch = list[tuple[list[Write], asyncio.Future[list[int]]]]


class GroupCommit:
    """Runs ``await group.execute(statement, params)`` writes (or ``execute_all``: a caller's several writes,
    all or none) in shared transactions, one batch at a time."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: Batch = []
        self._unsynced: Batch = []
        self._lock: asyncio.Lock | None = None
        #: PostgreSQL: the connection of the writes that do not wait for the disk (see _unsynced_postgres).
        self._unsynced_connection: AsyncConnection | None = None
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        #: The connection for batches written without SQLAlchemy (see _write_direct) and unsynced transactions;
        #: whether a commit since the write-ahead log was last synced is not on the disk yet; the log file
        #: last synced (its inode: a new one needs its directory synced too).
        self._direct: Connection | None = None
        self._wal_unsynced = False
        self._wal_inode: int | None = None
        #: Commits of the writer's connection since the writer thread last checkpointed, and the bytes of the
        #: bodies they wrote; whether a checkpoint is queued.
        self._since_checkpoint = 0
        self._bytes_since_checkpoint = 0
        self._checkpoint_queued = False
        #: SQLite: the coming sync of the write-ahead log, after writes committed without one.
        self._sync_timer: asyncio.TimerHandle | None = None

    @property
    def lock(self) -> asyncio.Lock:
        """Held while a batch commits.  Other write transactions of this process on the outbox take it too:
        on SQLite, two of them at once would make one wait in SQLite's busy handler (sleeping)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def execute(self, statement: Executable, params: Mapping[str, Any], *, sync: bool = True) -> int:
        """Execute and commit; the number of rows changed, once committed (and with ``sync``, on the disk).

        ``sync=False``: committed ahead of the writes waiting for the disk, without waiting for it; on the disk
        within SYNC_DELAY seconds (see the module's documentation)."""
        return (await self.execute_all([(statement, params)], sync=sync))[0]

    async def execute_all(self, writes: Sequence[Write], *, sync: bool = True) -> list[int]:
        """Several writes, in order, all committed or none (in the transaction of a batch, as for ``execute``);
        the number of rows each changed."""
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        (self._pending if sync else self._unsynced).append((list(writes), future))
        while not future.done():
            async with self.lock:
                if future.done():
                    break
                # Everything of a kind queued while the previous batch was committing goes in this one; the
                # writes that do not wait for the disk first (a caller of the other kind waits for its turn).
                if self._unsynced:
                    batch, self._unsynced = self._unsynced, []
                    await self._commit(batch, sync=False)
                else:
                    batch, self._pending = self._pending, []
                    await self._commit(batch, sync=True)
        return future.result()

    async def transaction(self, work: Callable[[Connection], T], *, sync: bool = True) -> T:
        """``work(connection)`` in a transaction of its own, committed; synchronous code on a Core connection
        (on SQLite in the writer thread, in turn with the batches; elsewhere through ``run_sync``).

        ``sync=False``: the commit does not wait for the disk, as for ``execute`` (a worker's claim: a power
        failure could only undo it, and a commit that syncs holds SQLite's write lock, which every other
        writer waits for, through the disk sync).  On SQLite such work runs on the event loop's thread, on
        the batches' connection, as a batch does: in the writer thread it took twice as long (each of its
        statements handing the GIL back and forth with the event loop), and delivery records wait for it.
        When another process holds the write lock, it runs again in the writer thread, which waits for the
        lock: ``work`` must do database work only (the first attempt is rolled back)."""
        async with self.lock:
            if sync or not self._db.is_sqlite:
                return await self._in_transaction(work, sync=sync)
            try:
                result = self._transaction_direct(work)
            except _Locked:
                result = await self._in_transaction(work, sync=False)
            self._sync_soon()
            self._checkpoint_if_due()
            return result

    async def close(self) -> None:
        await self._close_unsynced_connection()
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
        loop = asyncio.get_running_loop()
        if self._wal_unsynced:
            # What was committed without a disk sync, synced (in the writer thread: it takes milliseconds).
            await loop.run_in_executor(self._writer(), self._sync_wal)
        if self._direct is not None:
            # Closed before the engine is disposed of.
            await loop.run_in_executor(self._writer(), self._direct.close)
        self._direct = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._sync is not None:
            self._sync.dispose()
            self._sync = None

    async def _commit(self, batch: Batch, *, sync: bool) -> None:
        try:
            counts = await self._write([item for item, _ in batch], sync=sync)
        except _SyncFailed as failed:
            # Committed, maybe not on the disk: every caller says so (committing them again would apply them
            # twice, or fail them as duplicates).
            for _, future in batch:
                future.set_exception(failed.error)
            return
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            # One of them failed (e.g. a duplicate Idempotency-Key): commit each caller's writes on their own,
            # so that only that caller fails.
            for item in batch:
                await self._commit([item], sync=sync)
            return
        except BaseException as exc:  # cancelled while committing: nobody knows whether it was written
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            raise
        each = iter(counts)
        for own, future in batch:
            future.set_result([next(each) for _ in own])

    async def _write(self, items: list[list[Write]], *, sync: bool) -> list[int]:
        """A batch's writes (each caller's, in order) in one transaction; their row counts."""
        writes = [write for item in items for write in item]
        if self._db.is_sqlite:
            counts = await self._write_sqlite(writes, sync=sync)
            if counts is not None:
                if not sync:
                    self._sync_soon()
                return counts
            sync = True  # through SQLAlchemy's connections, which always sync
        elif not sync and (statements := pgwrite.planned(writes, self._db.engine.dialect)):
            return await self._on_unsynced_connection(functools.partial(_run_planned, statements))
        return await self._in_transaction(functools.partial(_execute_all, items), sync=sync)

    async def _write_sqlite(self, writes: list[Write], *, sync: bool) -> list[int] | None:
        """The batch on the connection of _write_direct, on this thread unless another process holds the
        write lock; with ``sync``, the write-ahead log synced before returning (the lock already released)."""
        loop = asyncio.get_running_loop()
        try:
            counts = self._write_direct(writes, wait=False)
        except _Locked:
            counts = await loop.run_in_executor(self._writer(), self._write_direct, writes)  # waits for it
        if counts is not None and sync:
            try:
                await loop.run_in_executor(self._writer(), self._sync_wal)
            except OSError as exc:
                raise _SyncFailed(exc) from exc
        # After this batch's sync: its callers do not wait for the checkpoint.
        self._checkpoint_if_due()
        return counts

    def _checkpoint_if_due(self) -> None:
        """SQLite: a checkpoint queued for the writer thread after CHECKPOINT_COMMITS commits of its connection,
        or CHECKPOINT_BYTES of bodies."""
        due = self._since_checkpoint >= CHECKPOINT_COMMITS or self._bytes_since_checkpoint >= CHECKPOINT_BYTES
        if due and not self._checkpoint_queued:
            self._checkpoint_queued = True
            checkpoint = asyncio.get_running_loop().run_in_executor(self._writer(), self._checkpoint)
            checkpoint.add_done_callback(self._checkpointed)

    def _sync_soon(self) -> None:
        """SQLite: after a commit without a disk sync (whichever connection made it), mark the write-ahead log
        unsynced and sync it within SYNC_DELAY."""
        self._wal_unsynced = True
        if self._sync_timer is None:
            self._sync_timer = asyncio.get_running_loop().call_later(SYNC_DELAY, self._start_sync)

    def _start_sync(self) -> None:
        self._sync_timer = None
        syncing = asyncio.get_running_loop().run_in_executor(self._writer(), self._sync_wal)
        syncing.add_done_callback(_report_sync_failure)

    def _sync_wal(self) -> None:
        """In the writer thread (one sync at a time, in turn): put the commits made so far on the disk (the
        write-ahead log holds them until a checkpoint)."""
        if not self._wal_unsynced:
            # Nothing committed since the flag was last cleared; a sync that cleared it after such a commit
            # has finished (syncs run one at a time, in this thread), and it covered the commit.
            return
        self._wal_unsynced = False
        database = self._engine().url.database
        wal = f"{database}-wal"
        try:
            fd = os.open(wal, os.O_RDONLY)
        except FileNotFoundError:
            return  # no log: the last connection to close checkpointed it into the database, and synced
        try:
            os.fsync(fd)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        if inode != self._wal_inode:
            # A log file this process has not synced before: its directory entry too (as SQLite does with
            # ``synchronous=FULL`` for a log it creates), or a power failure could lose the whole file.
            directory = os.open(os.path.dirname(wal) or ".", os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._wal_inode = inode

    def _checkpoint(self) -> None:
        """In the writer thread: copy the write-ahead log's pages into the database, without waiting for
        (or blocking) anyone (PASSIVE; it syncs the log first, and the database after)."""
        self._since_checkpoint = self._bytes_since_checkpoint = 0
        with self._engine().connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpoint_queued = False
        if not done.cancelled() and (exc := done.exception()) is not None:
            # The log grows until the next one (SQLite's readers still find every page).
            log.warning("could not checkpoint the outbox database's write-ahead log: %s", exc)

    def _write_direct(self, writes: list[Write], *, wait: bool = True) -> list[int] | None:
        """The batch on a DBAPI connection of the writer's own (used by one thread at a time: the caller
        holds the lock), when every write has a plan (SQLAlchemy's transaction and pool steps cost more than
        the writes, holding the GIL the event loop needs).  None, having changed nothing, for a batch to run
        through SQLAlchemy: a write without a plan, or one that failed (SQLAlchemy's exceptions are the ones
        callers know, IntegrityError...).  Committed with ``synchronous=NORMAL``: in the write-ahead log, not
        yet synced (_sync_wal).  When another process holds the write lock: waits for it in short pauses
        (the writer thread), or with ``wait=False`` (the event loop's thread) raises _Locked."""
        engine = self._engine()
        planned = []
        size = 0
        for statement, params in writes:
            found = write_plan(statement, engine.dialect, frozenset(params))
            if found is None:
                return None
            planned.append(found.bind(params))
            for key in found.blobs:
                size += len(params[key])
        connection = self._direct_connection().connection
        pause, deadline = BUSY_PAUSE, time.monotonic() + BUSY_LIMIT
        while True:
            try:
                cursor = connection.cursor()
                counts = []
                for sql, parameters in planned:
                    cursor.execute(sql, parameters)
                    counts.append(int(cursor.rowcount))
                cursor.close()
                connection.commit()
                break
            except engine.dialect.loaded_dbapi.Error as exc:
                connection.rollback()
                if _locked(exc) and not wait:
                    raise _Locked from exc
                if _locked(exc) and time.monotonic() < deadline:
                    time.sleep(pause)
                    pause = min(pause * 2, BUSY_PAUSE_MAX)
                    continue
                return None
        self._wal_unsynced = True
        self._since_checkpoint += 1
        self._bytes_since_checkpoint += size
        return counts

    def _transaction_direct(self, work: Callable[[Connection], T]) -> T:
        """``work`` in a transaction on the connection of _write_direct (the caller holds the lock), committed
        with ``synchronous=NORMAL``.  Raises _Locked, having changed nothing, when another process holds the
        write lock (the connection does not wait for it).  The caller marks the log unsynced (_sync_soon)."""
        connection = self._direct_connection()
        try:
            with connection.begin():
                result = work(connection)
        except DBAPIError as exc:
            if exc.orig is not None and _locked(exc.orig):
                raise _Locked from exc
            raise
        self._since_checkpoint += 1
        return result

    def _direct_connection(self) -> Connection:
        """SQLite: the connection of _write_direct and _transaction_direct, made on first use."""
        if self._direct is None:
            self._direct = self._engine().connect()
            driver = self._direct.connection.driver_connection
            assert driver is not None
            # Another process's write lock is waited for in short pauses (_write_direct) or in the writer
            # thread, not in SQLite's busy handler, which sleeps 1 ms at least: longer than most commits hold
            # the lock (one without a disk sync, a tenth of that).
            driver.execute("PRAGMA busy_timeout=0")
            # Commits write the log and release the lock; _sync_wal puts them on the disk, and the writer
            # thread checkpoints (see CHECKPOINT_COMMITS).
            driver.execute("PRAGMA synchronous=NORMAL")
            driver.execute("PRAGMA wal_autocheckpoint=0")
        return self._direct

    async def _in_transaction(self, work: Callable[[Connection], T], *, sync: bool) -> T:
        # The one way both batches and transaction() reach the database (the caller holds the lock).
        if not self._db.is_sqlite:
            if not sync:
                return await self._unsynced_postgres(work)
            async with self._db.engine.begin() as connection:
                return await connection.run_sync(work)
        return await asyncio.get_running_loop().run_in_executor(
            self._writer(), functools.partial(_transaction, self._engine(), work, sync=sync)
        )

    async def _unsynced_postgres(self, work: Callable[[Connection], T]) -> T:
        """PostgreSQL: work whose commit does not wait for the WAL flush (asynchronous commit, for its own
        transaction: SET LOCAL, so that no other transaction is ever affected, even through a pooler such as
        PgBouncer in transaction mode), on the connection of _on_unsynced_connection."""

        async def attempt(connection: AsyncConnection) -> T:
            async with connection.begin():
                await connection.exec_driver_sql(pgwrite.ASYNC_COMMIT)
                return await connection.run_sync(work)

        return await self._on_unsynced_connection(attempt)

    async def _on_unsynced_connection(self, attempt: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """PostgreSQL: ``attempt`` on a connection of its own kept open for the writes that do not wait for the
        disk (claims, and records: see :mod:`.pgwrite`).  A connection from the pool for each cost the
        pool's liveness ping, another round trip to the server: 0.87 -> 0.70 ms of a worker's CPU per
        message.  When the connection was lost (the server restarted), another is opened and the work run
        again, once: a delivery's record changes nothing the second time (its lease is gone), a claim's update
        checks each row again."""
        for tried in range(2):
            connection = self._unsynced_connection or await self._open_unsynced_connection()
            try:
                return await attempt(connection)
            except DBAPIError as exc:
                if not (exc.connection_invalidated or connection.invalidated) or tried:
                    raise
                reason = type(exc.orig).__name__
                log.warning("the outbox's database connection was lost (%s): opening another", reason)
                await self._close_unsynced_connection()
            except asyncio.CancelledError:
                # Cancelled with a statement maybe still under way: not used again.
                await self._close_unsynced_connection()
                raise
        raise AssertionError("unreachable")

    async def _open_unsynced_connection(self) -> AsyncConnection:
        self._unsynced_connection = connection = await self._db.engine.connect()
        return connection

    async def _close_unsynced_connection(self) -> None:
        connection, self._unsynced_connection = self._unsynced_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()  # maybe mid-statement: not back in the pool
                await connection.close()

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


def _execute_all(items: list[list[Write]], connection: Connection) -> list[int]:
    """A batch's writes (each caller's, in order) through SQLAlchemy (PostgreSQL; on SQLite the batches
    _write_direct leaves to it, synced); the row count of each."""
    if len(items) > 1 and all(_plain_insert(statement) for item in items for statement, _ in item):
        return _insert_many(items, connection)
    return [
        int(connection.execute(statement, dict(params), execution_options=_COUNTED).rowcount)
        for item in items
        for statement, params in item
    ]


async def _run_planned(statements: list[pgwrite.Statement], connection: AsyncConnection) -> list[int]:
    """PostgreSQL: the writes of a batch that does not wait for the disk, in one round trip (:mod:`.pgwrite`)."""
    raw = await connection.get_raw_connection()
    return await pgwrite.run(raw.driver_connection, statements)


def _insert_many(items: list[list[Write]], connection: Connection) -> list[int]:
    """A batch of plain INSERTs (the API's new messages: each a row, then its body) as one ``executemany`` per
    statement: on PostgreSQL one round trip each (psycopg pipelines them) instead of one per row, which cost
    the API 0.13 ms per message once bodies had a table of their own.  Each caller's first writes go before
    their second ones (a body after the row it refers to); inserts of different rows commute otherwise.
    Each such INSERT adds exactly one row or raises (then the whole batch does, see GroupCommit._commit)."""
    for stage in range(max(len(item) for item in items)):
        groups: dict[tuple[int, frozenset[str]], tuple[Executable, list[dict[str, Any]]]] = {}
        for item in items:
            if stage < len(item):
                statement, params = item[stage]
                groups.setdefault((id(statement), frozenset(params)), (statement, []))[1].append(dict(params))
        for statement, rows in groups.values():
            connection.execute(statement, rows)
    return [1 for item in items for _ in item]


def _plain_insert(statement: Executable) -> bool:
    """INSERT ... VALUES of the parameters alone: no RETURNING, ON CONFLICT, SELECT, or values of its own."""
    return (
        isinstance(statement, Insert)
        and not statement._returning
        and statement._post_values_clause is None
        and statement.select is None
        and not statement._values
        and not statement._multi_values
    )


class _SyncFailed(Exception):
    """The write-ahead log could not be synced after a batch was committed (``error``: why)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _Locked(Exception):
    """Another connection holds SQLite's write lock (see GroupCommit._write_direct)."""


def _locked(exc: BaseException) -> bool:
    """Whether a DBAPI error is SQLite's "database is locked" (SQLITE_BUSY, any extended code)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def _report_sync_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.error("could not sync the outbox database's write-ahead log to the disk: %s", exc)


def _transaction(engine: Engine, work: Callable[[Connection], T], *, sync: bool) -> T:
    if sync:
        with engine.begin() as connection:
            return work(connection)
    # SQLite changes ``synchronous`` only outside a transaction, and it is the pooled connection's: set back.
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA synchronous=NORMAL")
        try:
            with connection.begin():
                return work(connection)
        finally:
            try:
                driver.execute("PRAGMA synchronous=FULL")
            except BaseException:
                connection.invalidate()  # never back in the pool without its disk syncs
                raise

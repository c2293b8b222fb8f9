"""GroupCommit: concurrent writes share transactions, each caller still gets its own row count (or its own
error), and on SQLite the batches run in one writer thread that ``close()`` releases.  On both databases."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Executable,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from mailgate.outbox import commit, queue
from mailgate.outbox.commit import GroupCommit
from mailgate.outbox.cursor import write_plan
from mailgate.store import Database
from mailgate.store import db as store_db
from mailgate.store.models import OutboxBodyRow, OutboxMessageRow

from .conftest import Env

Row = OutboxMessageRow
INSERT = insert(Row)
BODY = insert(OutboxBodyRow)
#: Rows with a given subject: their last_error set, attempts counted up.
TOUCH = (
    update(Row)
    .where(Row.subject == bindparam("_subject"))
    .values(last_error=bindparam("_error"), attempts=Row.attempts + 1)
)
THREAD_PREFIX = "mailgate-outbox-writes"
#: A table of its own, for GroupCommit on a database without the outbox's schema.
SMALL = Table("small", MetaData(), Column("id", Integer, primary_key=True), Column("v", String))


def _row(subject: str, row_id: str | None = None) -> dict[str, Any]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "id": row_id or str(uuid.uuid4()),
        "account_id": "default",
        "status": "queued",
        "sender": "user@example.com",
        "recipients": ["bob@example.com"],
        "subject": subject,
        "message_id": f"<{uuid.uuid4().hex}@example.com>",
        "size": 17,
        "attempts": 0,
        "next_attempt_at": now,
        "deadline_at": now + timedelta(days=2),
        "last_error": "",
        "last_error_code": "",
        "smtp_reply": "",
        "recipient_results": {},
        "idempotency_key": None,
        "request_hash": "",
        "created_at": now,
        "updated_at": now,
    }


@pytest.fixture
def commits() -> Iterator[list[str]]:
    """The names of the threads committing, one per transaction committed on any engine (the async engines'
    sync engines, and the synchronous one GroupCommit makes for SQLite)."""
    seen: list[str] = []

    def on_commit(connection: Any) -> None:
        seen.append(threading.current_thread().name)

    event.listen(Engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(Engine, "commit", on_commit)


@pytest.fixture
async def group(env: Env) -> AsyncIterator[GroupCommit]:
    """A GroupCommit of its own on the test database (not the outbox's), closed afterwards."""
    made = GroupCommit(env.services.db)
    yield made
    await made.close()


async def _rows(env: Env) -> dict[str, Row]:
    async with env.services.db.session() as session:
        return {row.id: row for row in (await session.execute(select(Row))).scalars()}


async def test_concurrent_writes_share_transactions_and_get_their_own_row_counts(
    env: Env, group: GroupCommit, commits: list[str]
) -> None:
    # Groups of rows by subject: "g{n}" has n rows.
    for n in range(1, 6):
        for _ in range(n):
            await group.execute(INSERT, _row(f"g{n}"))
    commits.clear()
    calls: list[tuple[Executable, Mapping[str, Any]]] = []
    for i in range(50):
        if i % 5 == 0:  # 10 updates touching 0, 1, ... 5, 0, 1, 2, 3 rows; the others inserts
            calls.append((TOUCH, {"_subject": f"g{i // 5 % 6}", "_error": f"touched by {i}"}))
        else:
            calls.append((INSERT, _row(f"new{i}")))

    counts = await asyncio.gather(*(group.execute(statement, params) for statement, params in calls))

    # Each caller gets the row count of its own statement (inserts: see test_insert_row_count).
    touched = [count for count, (statement, _) in zip(counts, calls, strict=True) if statement is TOUCH]
    assert touched == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    # Fewer transactions than writes (the first call commits alone, the rest queue behind it).
    assert 1 <= len(commits) < len(calls)
    # On SQLite in the writer thread; on PostgreSQL on the event loop's thread (the async engine).
    loop_thread = threading.current_thread().name
    if env.services.db.is_sqlite:
        assert all(name.startswith(THREAD_PREFIX) for name in commits), commits
    else:
        assert set(commits) == {loop_thread}
    # Everything committed: each group touched as many times as it was named (g1..g3 twice, g4 and g5 once).
    rows = await _rows(env)
    assert sum(row.subject.startswith("new") for row in rows.values()) == 40
    for n in range(1, 6):
        group_rows = [row for row in rows.values() if row.subject == f"g{n}"]
        times = sum(1 for (statement, params) in calls if statement is TOUCH and params["_subject"] == f"g{n}")
        assert len(group_rows) == n and {row.attempts for row in group_rows} == {times}


async def test_insert_row_count(env: Env, group: GroupCommit) -> None:
    assert await group.execute(INSERT, _row("one")) == 1


async def test_a_failing_write_fails_only_its_own_caller(
    env: Env, group: GroupCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = str(uuid.uuid4())
    await group.execute(INSERT, _row("original", taken))
    await group.execute(INSERT, _row("counted"))
    batches: list[tuple[int, bool]] = []  # (writes in the batch, committed)
    run = group._in_transaction

    async def counting_run(work: functools.partial[list[int]], *, sync: bool) -> list[int]:
        writes = work.args[0]  # a batch: _execute_all(writes, connection)
        try:
            counts: list[int] = await run(work, sync=sync)
        except Exception:
            batches.append((len(writes), False))
            raise
        batches.append((len(writes), True))
        return counts

    monkeypatch.setattr(group, "_in_transaction", counting_run)
    calls: list[tuple[Executable, Mapping[str, Any]]] = [(INSERT, _row(f"new{i}")) for i in range(20)]
    calls[10] = (INSERT, _row("duplicate", taken))  # the primary key exists: IntegrityError
    calls[15] = (TOUCH, {"_subject": "counted", "_error": "once"})  # must be applied once, not twice

    results = await asyncio.gather(
        *(group.execute(statement, params) for statement, params in calls), return_exceptions=True
    )

    assert isinstance(results[10], IntegrityError)
    assert not [r for r in results[:10] + results[11:] if isinstance(r, BaseException)]
    assert results[15] == 1
    # The duplicate went in a shared batch, which failed as a whole and was then committed write by write.
    assert any(size > 1 and not committed for size, committed in batches), batches
    rows = await _rows(env)
    assert sorted(row.subject for row in rows.values() if row.subject.startswith("new")) == sorted(
        f"new{i}" for i in range(20) if i not in (10, 15)
    )
    assert rows[taken].subject == "original"
    [counted] = [row for row in rows.values() if row.subject == "counted"]
    assert counted.attempts == 1 and counted.last_error == "once"


async def test_a_callers_writes_are_committed_together_or_not_at_all(env: Env, group: GroupCommit) -> None:
    """execute_all: a message's row and its body.  When one of a caller's writes fails, none of its writes is
    kept; the other callers of the batch keep theirs."""
    taken = str(uuid.uuid4())
    await group.execute(INSERT, _row("original", taken))
    half, whole = _row("half"), _row("whole")
    async with group.lock:  # both callers queue up behind it, for one batch
        failing = asyncio.create_task(group.execute_all([(INSERT, half), (INSERT, _row("duplicate", taken))]))
        fine = asyncio.create_task(
            group.execute_all([(INSERT, whole), (insert(OutboxBodyRow), {"id": whole["id"], "raw": b"x"})])
        )
        await asyncio.sleep(0)
    with pytest.raises(IntegrityError):
        await failing
    assert await fine == [1, 1]
    rows = await _rows(env)
    assert {row.subject for row in rows.values()} == {"original", "whole"}  # "half" rolled back with its pair
    async with env.services.db.session() as session:
        assert (await session.get(OutboxBodyRow, whole["id"])) is not None


async def test_a_batch_of_new_messages_is_one_executemany_per_table(env: Env, group: GroupCommit) -> None:
    """The API's new messages (a row, then its body) through SQLAlchemy: one executemany per table (on
    PostgreSQL one round trip each, instead of one per row), the rows before the bodies that refer to them;
    each caller still gets its own counts."""
    await group.execute(INSERT, _row("first"))
    seen: list[tuple[str, int, bool]] = []  # (statement's first words, parameter sets, executemany)

    def on_execute(_conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        seen.append((" ".join(statement.split()[:3]), len(params) if many else 1, many))

    rows = [_row(f"m{i}") for i in range(5)]
    event.listen(Engine, "before_cursor_execute", on_execute)  # every engine: SQLite's writer has its own
    try:
        async with group.lock:  # the five queue up behind it, for one batch
            calls = [
                asyncio.create_task(group.execute_all([(INSERT, row), (BODY, {"id": row["id"], "raw": b"x" * i})]))
                for i, row in enumerate(rows)
            ]
            await asyncio.sleep(0)
        if env.services.db.is_sqlite:
            # SQLite's batches go to the writer's own cursor (_write_direct): run this one through SQLAlchemy.
            result = await group._in_transaction(
                functools.partial(commit._execute_all, [[(INSERT, _row("n0"))], [(INSERT, _row("n1"))]]), sync=True
            )
            assert result == [1, 1]
        assert await asyncio.gather(*calls) == [[1, 1]] * 5
    finally:
        event.remove(Engine, "before_cursor_execute", on_execute)

    inserts = [s for s in seen if s[0].startswith("INSERT")]
    if env.services.db.is_sqlite:
        assert inserts == [("INSERT INTO outbox_messages", 2, True)]
    else:
        assert inserts == [("INSERT INTO outbox_messages", 5, True), ("INSERT INTO outbox_bodies", 5, True)]
    async with env.services.db.session() as session:
        bodies = {b.id: b.raw for b in (await session.execute(select(OutboxBodyRow))).scalars()}
    assert {row["id"]: bodies[row["id"]] for row in rows} == {row["id"]: b"x" * i for i, row in enumerate(rows)}


def test_only_plain_inserts_go_as_executemany() -> None:
    assert commit._plain_insert(INSERT) and commit._plain_insert(BODY)
    assert not commit._plain_insert(INSERT.returning(Row.id))
    assert not commit._plain_insert(postgresql.insert(Row).on_conflict_do_nothing())
    assert not commit._plain_insert(insert(Row).values(subject="fixed"))
    assert not commit._plain_insert(TOUCH)


async def test_transaction_commits_or_rolls_back_its_work(env: Env, group: GroupCommit) -> None:
    def work(connection: Connection) -> str:
        connection.execute(INSERT, _row("in a transaction"))
        return threading.current_thread().name

    name = await group.transaction(work)
    # On SQLite in the writer thread, like the batches; on PostgreSQL through run_sync on the loop's thread.
    if env.services.db.is_sqlite:
        assert name.startswith(THREAD_PREFIX)
    else:
        assert name == threading.current_thread().name

    def failing(connection: Connection) -> None:
        connection.execute(INSERT, _row("rolled back"))
        raise LookupError("work failed")

    with pytest.raises(LookupError):
        await group.transaction(failing)
    assert sorted(row.subject for row in (await _rows(env)).values()) == ["in a transaction"]
    assert await group.execute(TOUCH, {"_subject": "in a transaction", "_error": "after"}) == 1


async def test_close_releases_the_writer_thread(env: Env, group: GroupCommit) -> None:
    before = set(threading.enumerate())
    await asyncio.gather(*(group.execute(INSERT, _row(f"t{i}")) for i in range(5)))
    started = [t for t in threading.enumerate() if t not in before and t.name.startswith(THREAD_PREFIX)]
    # One writer thread on SQLite (however many writes), none on PostgreSQL.
    assert len(started) == (1 if env.services.db.is_sqlite else 0)

    await group.close()

    assert not any(t.is_alive() for t in started)
    assert not [t for t in threading.enumerate() if t not in before and t.name.startswith(THREAD_PREFIX)]
    await group.close()  # closing twice is harmless (Services.aclose closes the outbox's too)


# -- delivery records: committed first, without waiting for the disk ----------------------------------------------


async def _trace(env: Env, group: GroupCommit, monkeypatch: pytest.MonkeyPatch | None = None) -> list[str]:
    """The statements the group's batches run from now on: on SQLite on the writer thread's own connection
    (its trace), elsewhere through SQLAlchemy, and with ``monkeypatch`` the batches of records sent as one
    query (:mod:`mailgate.outbox.pgwrite`; each of its statements, the query in ``queries``).  Call after a
    first write (which makes that connection)."""
    statements: list[str] = []
    if env.services.db.is_sqlite:
        direct = group._direct.connection.driver_connection
        await asyncio.get_running_loop().run_in_executor(group._writer(), direct.set_trace_callback, statements.append)
    else:

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(env.services.db.engine.sync_engine, "before_cursor_execute", seen)
        if monkeypatch is not None:
            import psycopg

            execute = psycopg.AsyncClientCursor.execute

            async def traced(cursor: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                queries.append(query)
                statements.extend(query.split(";\n"))
                return await execute(cursor, query, *args, **kwargs)

            monkeypatch.setattr(psycopg.AsyncClientCursor, "execute", traced)
    return statements


#: The queries of pgwrite seen by _trace.
queries: list[str] = []


async def test_unsynced_writes_commit_first_without_waiting_for_the_disk(
    env: Env, group: GroupCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    leased = {**_row("record me"), "status": "sending", "lease_owner": "me"}
    await group.execute(INSERT, leased)
    queries.clear()
    statements = await _trace(env, group, monkeypatch)

    # While a batch commits (the lock held), writes of both kinds queue; the unsynced one (a delivery's
    # record, as the worker writes it), queued last, is committed first, in a batch of its own.
    async with group.lock:
        synced = [asyncio.create_task(group.execute(INSERT, _row(f"s{i}"))) for i in range(3)]
        record = queue.finish(leased["id"], "me", {"status": "sent", "last_error": "r"})
        unsynced = asyncio.create_task(group.execute(*record, sync=False))
        await asyncio.sleep(0.05)
    assert await asyncio.gather(*synced, unsynced) == [1, 1, 1, 1]

    kinds = [s.split()[0].upper() for s in statements]
    writes = [s for s in statements if s.split()[0].upper() in ("INSERT", "UPDATE", "PRAGMA", "SET")]
    if env.services.db.is_sqlite:
        # The writer's connection (synchronous=NORMAL: the synced batch's log is synced after its commit).
        assert [w.split()[0] for w in writes] == ["UPDATE", "INSERT", "INSERT", "INSERT"]
        assert kinds.count("COMMIT") == 2  # two batches
    else:
        # PostgreSQL's asynchronous commit, for that transaction only (SET LOCAL).  The synced batch's three
        # inserts go as one executemany (test_a_batch_of_new_messages_is_one_executemany_per_table).
        assert [w.split()[0] for w in writes] == ["SET", "UPDATE", "INSERT"]
        assert writes[0] == "SET LOCAL synchronous_commit TO OFF"
        # The record's batch in one query, one round trip (mailgate.outbox.pgwrite).
        [query] = queries
        assert [q.split()[0] for q in query.split(";\n")] == ["BEGIN", "SET", "UPDATE", "COMMIT"]
    rows = await _rows(env)
    assert [(row.status, row.last_error) for row in rows.values() if row.subject == "record me"] == [("sent", "r")]
    assert sorted(row.subject for row in rows.values()) == ["record me", "s0", "s1", "s2"]


#: Text that quoting must keep as it is (quotes, backslashes, SQL, placeholders, non-ASCII).
AWKWARD = "it's \\ a 'quoted' \"test\"; DROP TABLE outbox_messages; -- ü 𝄞 %s %(x)s ?"


async def test_records_in_a_batch_keep_their_values_and_row_counts(env: Env, group: GroupCommit) -> None:
    """A batch of delivery records (on PostgreSQL one query, see mailgate.outbox.pgwrite): each caller gets its
    own row count (0: the lease is another's), values are stored exactly, and a failing write fails only its
    caller, the others' records kept and the connection usable for a claim's transaction afterwards."""
    rows = [{**_row(f"r{i}"), "status": "sending", "lease_owner": "me" if i < 3 else "other"} for i in range(4)]
    for row in rows:
        await group.execute(INSERT, row)
    results = {"a@example.com": {"status": "failed", "code": 550, "reply": AWKWARD}}
    records = [
        queue.finish(row["id"], "me", {"status": "sent", "last_error": f"{AWKWARD} {i}", "recipient_results": results})
        for i, row in enumerate(rows)
    ]
    async with group.lock:  # the four queue up behind it, for one batch
        calls = [asyncio.create_task(group.execute(*record, sync=False)) for record in records]
        await asyncio.sleep(0)
    assert await asyncio.gather(*calls) == [1, 1, 1, 0]
    stored = await _rows(env)
    for i, row in enumerate(rows[:3]):
        assert (stored[row["id"]].status, stored[row["id"]].last_error) == ("sent", f"{AWKWARD} {i}")
        assert stored[row["id"]].recipient_results == results
    assert stored[rows[3]["id"]].status == "sending"

    # One caller's write fails (a duplicate): its batch is rolled back, then each caller committed alone.
    late = {**_row("late"), "status": "sending", "lease_owner": "me"}
    await group.execute(INSERT, late)
    async with group.lock:
        failing = asyncio.create_task(group.execute(INSERT, _row("duplicate", rows[0]["id"]), sync=False))
        fine = asyncio.create_task(group.execute(*queue.finish(late["id"], "me", {"status": "sent"}), sync=False))
        await asyncio.sleep(0)
    with pytest.raises(IntegrityError):
        await failing
    assert await fine == 1
    assert (await _rows(env))[late["id"]].status == "sent"

    # The connection is back to SQLAlchemy's transactions: work that fails is rolled back as a whole.
    def fails_after_writing(connection: Connection) -> None:
        connection.execute(update(Row).where(Row.id == rows[3]["id"]).values(last_error="not kept"))
        raise RuntimeError("after the write")

    with pytest.raises(RuntimeError):
        await group.transaction(fails_after_writing, sync=False)
    assert (await _rows(env))[rows[3]["id"]].last_error == ""


async def test_postgres_unsynced_writes_keep_a_connection_of_their_own(
    env: Env, group: GroupCommit, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL: the writes that do not wait for the disk share one connection kept open (no pool checkout
    and liveness ping for each), with asynchronous commit for each transaction only; the others still wait
    for the flush. A lost connection (the server restarted, or an administrator ended it) is replaced, and
    the work run again, once: the write is made, once."""
    if env.services.db.is_sqlite:
        return  # SQLite: the unsynced writes are on the writer's own connection (the tests above)

    def seen(connection: Connection) -> tuple[int, str]:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        return int(pid), str(connection.exec_driver_sql("SHOW synchronous_commit").scalar_one())

    first, setting = await group.transaction(seen, sync=False)
    assert setting == "off"
    statements = await _trace(env, group)
    checkouts: list[object] = []

    def checked_out(*args: object) -> None:
        checkouts.append(args)

    pool = env.services.db.engine.sync_engine.pool
    event.listen(pool, "checkout", checked_out)
    try:
        assert await group.transaction(seen, sync=False) == (first, "off")  # the same connection, kept
        assert await group.transaction(seen, sync=False) == (first, "off")
    finally:
        event.remove(pool, "checkout", checked_out)
    assert checkouts == []  # not taken from the pool each time (a liveness ping each)
    # The setting for each transaction only.
    assert (
        statements == ["SET LOCAL synchronous_commit TO OFF", "SELECT pg_backend_pid()", "SHOW synchronous_commit"] * 2
    )
    assert (await group.transaction(seen))[1] == "on"  # a write that waits for the disk: as ever
    taken = str(uuid.uuid4())
    await group.execute(INSERT, {**_row("taken", taken), "status": "sending", "lease_owner": "me"})
    with pytest.raises(IntegrityError):  # a failed write leaves the connection as it is
        await group.execute(INSERT, _row("duplicate", taken), sync=False)
    assert (await group.transaction(seen, sync=False))[0] == first

    # Another session ends the connection (what a server restart does to it).
    async with env.services.db.engine.connect() as other:
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    record = queue.finish(taken, "me", {"status": "sent", "last_error": "after the reconnect"})
    assert await group.execute(*record, sync=False) == 1
    assert "the outbox's database connection was lost" in caplog.text  # and the record written on another
    second, setting = await group.transaction(seen, sync=False)
    assert second != first and setting == "off"
    rows = await _rows(env)
    assert [(row.status, row.last_error) for row in rows.values() if row.id == taken] == [
        ("sent", "after the reconnect")
    ]


class _Syncs:
    """os.fsync, watched: the files synced (the real fsync still runs; ``before``, if set, is called first
    with the path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        self.before: Callable[[str], None] | None = None
        real = os.fsync

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if self.before is not None:
                self.before(path)
            self.paths.append(path)
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


@dataclass
class Small:
    """A GroupCommit on a SQLite file of its own, with the SMALL table."""

    path: Path
    db: Database
    group: GroupCommit


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Small]:
    path = tmp_path / "small.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.engine.begin() as connection:
        await connection.run_sync(SMALL.metadata.create_all)
    group = GroupCommit(db)
    try:
        yield Small(path, db, group)
    finally:
        await group.close()
        await db.engine.dispose()


async def test_sqlite_syncs_the_log_soon_after_unsynced_writes(small: Small, monkeypatch: pytest.MonkeyPatch) -> None:
    db, group = small.db, small.group
    syncs = _Syncs(monkeypatch)
    wal = f"{small.path}-wal"
    # Committed, for every reader, when execute returns; on the disk within SYNC_DELAY.
    assert await group.execute(insert(SMALL), {"id": 1, "v": "a"}, sync=False) == 1
    assert syncs.paths == []
    async with db.engine.connect() as reader:
        assert (await reader.execute(select(SMALL.c.v))).scalars().all() == ["a"]
    for _ in range(100):
        if syncs.paths:
            break
        await asyncio.sleep(0.01)
    # That sync has started; the writer thread runs one job at a time: once this one has run, it is over.
    await asyncio.get_running_loop().run_in_executor(group._writer(), lambda: None)
    # The log, and the first time its directory (a power failure could lose a file it has just made).
    assert syncs.paths == [wal, str(small.path.parent)]

    # A synced write syncs the log before it returns, the earlier unsynced write's part too: nothing left.
    monkeypatch.setattr(commit, "SYNC_DELAY", 0.3)
    await group.execute(insert(SMALL), {"id": 2, "v": "b"}, sync=False)
    await group.execute(insert(SMALL), {"id": 3, "v": "c"})
    assert syncs.paths[2:] == [wal]
    await asyncio.sleep(0.5)
    assert syncs.paths[2:] == [wal]

    # Closing syncs what is left.
    monkeypatch.setattr(commit, "SYNC_DELAY", 60)
    await group.execute(insert(SMALL), {"id": 4, "v": "d"}, sync=False)
    await group.close()
    assert syncs.paths[2:] == [wal, wal]


async def test_sqlite_a_failed_sync_fails_its_batch_without_writing_it_again(
    small: Small, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writes are committed before the log is synced: when the sync fails (the disk), their callers get
    that error, and the writes are not committed a second time one by one (as after a failed write)."""
    group = small.group
    await group.execute(insert(SMALL), {"id": 1, "v": "first"})  # the writer's own connection exists

    def failing_sync() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(group, "_sync_wal", failing_sync)
    results = await asyncio.gather(
        *(group.execute(insert(SMALL), {"id": i, "v": f"w{i}"}) for i in range(2, 6)), return_exceptions=True
    )
    assert [type(r) for r in results] == [OSError] * 4, results  # not IntegrityError: not written twice
    monkeypatch.undo()
    async with small.db.engine.connect() as reader:
        assert (await reader.execute(select(SMALL.c.id).order_by(SMALL.c.id))).scalars().all() == [1, 2, 3, 4, 5]


async def test_an_unsynced_transaction_does_not_wait_for_the_disk(
    env: Env, group: GroupCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's claim: committed without waiting for the disk (a power failure could only undo it), on the
    disk soon after; the transactions that sync still do."""
    syncs = _Syncs(monkeypatch)
    sqlite = env.services.db.is_sqlite
    setting = "PRAGMA synchronous" if sqlite else "SHOW synchronous_commit"
    unsynced, synced = ("1", "2") if sqlite else ("off", "on")  # NORMAL / FULL

    def work(connection: Connection) -> str:
        connection.execute(INSERT, _row("claimed"))
        return str(connection.exec_driver_sql(setting).scalar())

    assert await group.transaction(work, sync=False) == unsynced
    assert await group.transaction(work) == synced  # set back (SQLite: on the pooled connection)
    assert await group.transaction(work, sync=False) == unsynced
    assert await group.transaction(work) == synced
    assert [row.subject for row in (await _rows(env)).values()] == ["claimed"] * 4
    if sqlite:
        for _ in range(100):
            if syncs.paths:
                break
            await asyncio.sleep(0.01)
        assert syncs.paths and syncs.paths[0].endswith("-wal")


class _Threads:
    """GroupCommit._write_direct, watched: the threads it ran on, and what it returned."""

    def __init__(self, group: GroupCommit, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, bool, object]] = []  # (thread, wait, returned or raised)
        real = group._write_direct

        def spy(writes: Any, *, wait: bool = True) -> Any:
            name = threading.current_thread().name
            try:
                result = real(writes, wait=wait)
            except Exception as exc:
                self.calls.append((name, wait, type(exc).__name__))
                raise
            self.calls.append((name, wait, result))
            return result

        monkeypatch.setattr(group, "_write_direct", spy)


async def test_sqlite_writes_on_the_event_loops_thread_and_syncs_after_releasing_the_lock(
    small: Small, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hand-off to the writer thread for SQLite's part of a batch (the hand-off costs more); a synced
    write's caller resumes once the log is on the disk, synced in the writer thread (the event loop goes on
    meanwhile) after the commit released the write lock, which other processes wait for."""
    group, threads, syncs = small.group, _Threads(small.group, monkeypatch), _Syncs(monkeypatch)
    other = sqlite3.connect(small.path, isolation_level=None, timeout=0, check_same_thread=False)
    # (path, thread, another connection could take the lock, the synced write's caller had resumed)
    during_sync: list[tuple[str, str, bool, bool]] = []
    returned = False

    def probe(path: str) -> None:
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            free = True
        except sqlite3.OperationalError:
            free = False
        during_sync.append((path, threading.current_thread().name, free, returned))

    syncs.before = probe
    loop_thread = threading.current_thread().name
    try:
        assert await group.execute(insert(SMALL), {"id": 1, "v": "a"}, sync=False) == 1
        assert syncs.paths == []
        assert await group.execute(insert(SMALL), {"id": 2, "v": "b"}) == 1
        returned = True
        assert syncs.paths[0] == f"{small.path}-wal"
        assert await group.execute(update(SMALL).where(SMALL.c.id == 1).values(v="c"), {}, sync=False) == 1
    finally:
        syncs.before = None
        other.close()
    assert threads.calls == [(loop_thread, False, [1])] * 3
    assert all(thread.startswith(THREAD_PREFIX) and free for _, thread, free, _ in during_sync)
    # The log was synced before the synced write's caller resumed (later syncs: the timer's, for the others).
    assert (f"{small.path}-wal", False) in [(path, after) for path, _, _, after in during_sync]
    async with small.db.engine.connect() as reader:
        assert (await reader.execute(select(SMALL.c.v).order_by(SMALL.c.id))).scalars().all() == ["c", "b"]


async def test_sqlite_checkpoints_in_the_writer_thread(small: Small, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's automatic checkpoint would run in the commit that crosses its threshold, on the event
    loop's thread (copying pages, two disk syncs): the writer's connection has it off, and the writer thread
    checkpoints every CHECKPOINT_COMMITS commits, after the batch's callers have resumed."""
    monkeypatch.setattr(commit, "CHECKPOINT_COMMITS", 5)
    group = small.group
    checkpoints: list[str] = []
    real = group._checkpoint

    def spy() -> None:
        checkpoints.append(threading.current_thread().name)
        real()

    monkeypatch.setattr(group, "_checkpoint", spy)
    loop = asyncio.get_running_loop()
    for i in range(12):
        assert await group.execute(insert(SMALL), {"id": i, "v": "x"}, sync=i % 2 == 0) == 1
        # The writer thread runs one job at a time: once this one has run, a checkpoint queued before is over.
        await loop.run_in_executor(group._writer(), lambda: None)
    assert group._direct.connection.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    assert len(checkpoints) == 2 and all(name.startswith(THREAD_PREFIX) for name in checkpoints), checkpoints


BLOBS = Table("blobs", MetaData(), Column("id", Integer, primary_key=True), Column("data", LargeBinary))


async def test_sqlite_checkpoints_after_large_bodies_and_cuts_the_log_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies of CHECKPOINT_BYTES since the last checkpoint queue one, however few the commits; then the
    write-ahead log starts over and SQLite cuts its file back to WAL_SIZE_LIMIT."""
    monkeypatch.setattr(commit, "CHECKPOINT_BYTES", 1024 * 1024)
    monkeypatch.setattr(store_db, "WAL_SIZE_LIMIT", 256 * 1024)
    path = tmp_path / "blobs.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.engine.begin() as connection:
        await connection.run_sync(BLOBS.metadata.create_all)
    group = GroupCommit(db)
    checkpoints: list[int] = []
    real = group._checkpoint

    def spy() -> None:
        checkpoints.append(os.path.getsize(f"{path}-wal"))
        real()

    monkeypatch.setattr(group, "_checkpoint", spy)
    loop = asyncio.get_running_loop()
    bodies = {i: os.urandom(400 * 1024) for i in range(3)}
    try:
        for i, body in bodies.items():
            assert await group.execute(insert(BLOBS), {"id": i, "data": body}) == 1
            await loop.run_in_executor(group._writer(), lambda: None)  # a checkpoint queued meanwhile is over
        assert len(checkpoints) == 1 and checkpoints[0] > 1024 * 1024, checkpoints  # after 3 commits, not 100
        assert await group.execute(insert(BLOBS), {"id": 9, "data": b"x"}) == 1  # the log starts over
        assert os.path.getsize(f"{path}-wal") <= 256 * 1024
        async with db.engine.connect() as reader:
            stored = {row.id: row.data for row in await reader.execute(select(BLOBS))}
        assert stored == {**bodies, 9: b"x"}
    finally:
        await group.close()
        await db.engine.dispose()


def _hold_write_lock(small: Small, row_id: int, seconds: float) -> tuple[sqlite3.Connection, list[float]]:
    """Another process (another connection) holds the write lock, having written row ``row_id`` ('held'),
    for ``seconds``; then commits (the time it did is appended to the list).  Close the connection after."""
    holder = sqlite3.connect(small.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO small VALUES (?, 'held')", (row_id,))
    released: list[float] = []

    def release() -> None:
        holder.execute("COMMIT")
        released.append(time.monotonic())

    asyncio.get_running_loop().call_later(seconds, release)
    return holder, released


async def test_sqlite_waits_for_another_processs_write_lock_in_short_pauses(
    small: Small, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = small.group
    await group.execute(insert(SMALL), {"id": 1, "v": "a"})  # the writer's own connection exists
    through_sqlalchemy: list[object] = []
    run = group._in_transaction

    async def spy(work: Any, *, sync: bool) -> Any:
        through_sqlalchemy.append(work)
        return await run(work, sync=sync)

    monkeypatch.setattr(group, "_in_transaction", spy)
    holder, released = _hold_write_lock(small, 2, 0.25)
    threads = _Threads(group, monkeypatch)
    try:
        assert await group.execute(insert(SMALL), {"id": 3, "v": "waited"}, sync=False) == 1
        done = time.monotonic()
    finally:
        holder.close()
    # Not waited for on the event loop's thread (it found the lock taken): in the writer thread.
    assert [(name.startswith(THREAD_PREFIX), result) for name, _, result in threads.calls] == [
        (False, "_Locked"),
        (True, [1]),
    ]
    # Written on the writer's connection, soon after the lock was released: it tries again every 2 ms at
    # most, where SQLite's busy handler, by then, sleeps 100 ms at a time (it would be done ~80 ms late).
    assert released and 0 <= done - released[0] < 0.03, (released, done)
    assert through_sqlalchemy == []
    async with small.db.engine.connect() as reader:
        assert (await reader.execute(select(SMALL.c.v).order_by(SMALL.c.id))).scalars().all() == ["a", "held", "waited"]

    # Held longer than BUSY_LIMIT: the batch goes through SQLAlchemy, which waits in SQLite's busy handler.
    monkeypatch.setattr(commit, "BUSY_LIMIT", 0.1)
    holder = sqlite3.connect(small.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.4, holder.execute, "COMMIT")
    try:
        assert await group.execute(insert(SMALL), {"id": 4, "v": "later"}) == 1
    finally:
        holder.close()
    assert len(through_sqlalchemy) == 1


async def test_sqlite_unsynced_transaction_on_the_event_loops_thread_or_after_another_processs_lock(
    small: Small,
) -> None:
    """A worker's claim (``sync=False``): on the event loop's thread, on the batches' connection (no hand-off
    to the writer thread); when another process holds the write lock, rolled back and run again in the writer
    thread once the lock is free, its writes made once."""
    group = small.group
    attempts: list[str] = []  # the threads the work ran on

    def work(connection: Connection) -> str:
        attempts.append(threading.current_thread().name)
        connection.execute(insert(SMALL), [{"id": len(attempts) * 10 + i, "v": f"try{len(attempts)}"} for i in (1, 2)])
        return str(connection.exec_driver_sql("PRAGMA synchronous").scalar())

    loop_thread = threading.current_thread().name
    assert await group.transaction(work, sync=False) == "1"  # NORMAL: the commit does not wait for the disk
    assert attempts == [loop_thread]
    assert group._direct is not None and group._direct.connection.driver_connection is not None

    def failing(connection: Connection) -> None:
        connection.execute(insert(SMALL), {"id": 99, "v": "rolled back"})
        raise LookupError("work failed")

    with pytest.raises(LookupError):
        await group.transaction(failing, sync=False)

    attempts.clear()
    holder, released = _hold_write_lock(small, 5, 0.25)
    try:
        assert await group.transaction(work, sync=False) == "1"
    finally:
        holder.close()
    assert released
    assert attempts[0] == loop_thread and attempts[1].startswith(THREAD_PREFIX) and len(attempts) == 2
    async with small.db.engine.connect() as reader:
        stored = (await reader.execute(select(SMALL.c.id, SMALL.c.v).order_by(SMALL.c.id))).all()
    # The first call's rows (11, 12), the other process's, and the last call's (21, 22) once: its first attempt,
    # stopped by the lock at its first write, left nothing; the failing work's row was rolled back.
    assert [tuple(row) for row in stored] == [(5, "held"), (11, "try1"), (12, "try1"), (21, "try2"), (22, "try2")]
    # And the connection is fine for the batches after all that.
    assert await group.execute(insert(SMALL), {"id": 30, "v": "after"}, sync=False) == 1


# -- SQLite: one-row writes on the DBAPI cursor, as SQLAlchemy would write them ------------------------------------

EVERY_KIND = {
    "status": "sent",
    "attempts": 3,
    "recipients": ["bob@example.com", "zoë@exämple.com"],
    "recipient_results": {"bob@example.com": {"status": "sent", "code": 250, "reply": "OK ✓"}, "x": None},
    "smtp_code": 250,
    "smtp_reply": "2.0.0 OK",
    "sent_at": datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone(timedelta(hours=-5))),
    "lease_owner": None,
    "lease_expires_at": None,
    "idempotency_key": "key-1",
}


UNIQUE = ("id", "subject", "idempotency_key", "message_id")


def _columns(row: Row) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in Row.__table__.c if c.key not in UNIQUE}


async def test_cursor_writes_store_what_sqlalchemy_stores(env: Env, group: GroupCommit) -> None:
    """On SQLite the batches' INSERTs and UPDATEs go straight to the cursor: the rows read back must be the
    ones SQLAlchemy's own execution makes of the same parameters (JSON, binary, time zones, NULLs)."""
    fast, slow = _row("fast"), _row("slow")
    fast.update(EVERY_KIND)
    slow.update(EVERY_KIND, idempotency_key="key-2")
    sent = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    body = b"Subject: \xff\x00binary\r\n\r\n\x00\r\n"
    event.listen(Engine, "before_cursor_execute", seen)
    try:
        assert await group.execute_all([(INSERT, fast), (BODY, {"id": fast["id"], "raw": body})]) == [1, 1]
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    async with env.services.db.session() as session:
        await session.execute(INSERT, slow)
        await session.execute(BODY, {"id": slow["id"], "raw": body})
    rows = {row.subject: row for row in (await _rows(env)).values()}
    assert _columns(rows["fast"]) == _columns(rows["slow"])
    async with env.services.db.session() as session:
        bodies = {row.id: row.raw for row in (await session.execute(select(OutboxBodyRow))).scalars()}
    assert bodies == {fast["id"]: body, slow["id"]: body}
    assert rows["fast"].sent_at == EVERY_KIND["sent_at"] and rows["fast"].sent_at.tzinfo is not None
    if env.services.db.is_sqlite:
        assert not [s for s in sent if s.startswith("INSERT")], sent  # not through SQLAlchemy's execution

    # The worker's result write, through the cursor and through SQLAlchemy, on rows leased alike.
    later = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    async with env.services.db.session() as session:
        await session.execute(update(Row).values(status="sending", lease_owner="me"))
    values = {"status": "retrying", "attempts": 4, "last_error": "later ✗", "next_attempt_at": later, "smtp_code": None}
    statement, params = queue.finish(rows["fast"].id, "me", values)
    assert await group.execute(statement, params) == 1
    assert await group.execute(*queue.finish(rows["fast"].id, "me", values)) == 0  # no longer leased
    async with env.services.db.session() as session:
        await session.execute(statement, {**params, "_id": rows["slow"].id})
    rows = {row.subject: row for row in (await _rows(env)).values()}
    assert _columns(rows["fast"]) == _columns(rows["slow"])
    assert rows["fast"].lease_owner is None and rows["fast"].next_attempt_at == later


def test_cursor_plans_only_for_plain_one_row_writes() -> None:
    dialect = sqlite.dialect()
    keys = frozenset(_row("x"))
    assert write_plan(INSERT, dialect, keys) is not None
    assert write_plan(*_finish_plan_args(dialect)) is not None
    # Left to SQLAlchemy: a column default to compute (attempts), RETURNING, a list of values, other databases.
    assert write_plan(INSERT, dialect, keys - {"attempts"}) is None
    assert write_plan(INSERT.returning(Row.id), dialect, keys) is None
    in_list = update(Row).where(Row.id.in_(bindparam("ids", expanding=True))).values(status="held")
    assert write_plan(in_list, dialect, frozenset({"ids"})) is None
    assert write_plan(INSERT, postgresql.psycopg.dialect(), keys) is None


def _finish_plan_args(dialect: Any) -> tuple[Executable, Any, frozenset[str]]:
    statement, params = queue.finish("id", "owner", {"status": "sent", "sent_at": None, "recipient_results": {}})
    return statement, dialect, frozenset(params)

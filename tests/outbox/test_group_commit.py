"""GroupCommit: concurrent writes share transactions, each caller still gets its own row count (or its own
error), a caller's writes are committed together or not at all, and ``sync=False`` writes do not wait for the
disk.  On both databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Executable, bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailgate.outbox.commit import GroupCommit
from mailgate.store.models import OutboxBodyRow, OutboxMessageRow

from .conftest import Env

Row = OutboxMessageRow
INSERT = insert(Row)
#: Rows with a given subject: their last_error set, attempts counted up.
TOUCH = (
    update(Row)
    .where(Row.subject == bindparam("_subject"))
    .values(last_error=bindparam("_error"), attempts=Row.attempts + 1)
)


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
def commits() -> Iterator[list[int]]:
    """One entry per transaction committed on any engine."""
    seen: list[int] = []

    def on_commit(connection: Any) -> None:
        seen.append(1)

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


async def _subjects(env: Env) -> list[str]:
    async with env.services.db.session() as session:
        return sorted((await session.execute(select(Row.subject))).scalars())


async def test_concurrent_writes_share_transactions_and_get_their_own_row_counts(
    env: Env, group: GroupCommit, commits: list[int]
) -> None:
    for n in range(1, 6):  # "g{n}" has n rows
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

    touched = [count for count, (statement, _) in zip(counts, calls, strict=True) if statement is TOUCH]
    assert touched == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    assert [count for count, (statement, _) in zip(counts, calls, strict=True) if statement is INSERT] == [1] * 40
    # Fewer transactions than writes (the first call commits alone, the rest queue behind it).
    assert 1 <= len(commits) < len(calls)
    subjects = await _subjects(env)
    assert len([s for s in subjects if s.startswith("new")]) == 40


async def test_a_failing_write_fails_only_its_own_caller(env: Env, group: GroupCommit) -> None:
    taken = str(uuid.uuid4())
    await group.execute(INSERT, _row("original", taken))
    await group.execute(INSERT, _row("counted"))
    calls: list[tuple[Executable, Mapping[str, Any]]] = [(INSERT, _row(f"new{i}")) for i in range(20)]
    calls[10] = (INSERT, _row("duplicate", taken))  # the primary key exists: IntegrityError
    calls[15] = (TOUCH, {"_subject": "counted", "_error": "once"})  # must be applied once, not twice
    async with group.lock:  # all of them queue up behind it, for one batch
        tasks = [asyncio.create_task(group.execute(statement, params)) for statement, params in calls]
        await asyncio.sleep(0)

    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(results[10], IntegrityError)
    assert results[:10] + results[11:15] + results[16:] == [1] * 18 and results[15] == 1
    expected = ["counted", "original"] + [f"new{i}" for i in range(20) if i not in (10, 15)]
    assert await _subjects(env) == sorted(expected)
    async with env.services.db.session() as session:
        counted = (await session.execute(select(Row).where(Row.subject == "counted"))).scalar_one()
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
    assert await _subjects(env) == ["original", "whole"]  # "half" rolled back with its pair
    async with env.services.db.session() as session:
        assert (await session.get(OutboxBodyRow, whole["id"])) is not None


async def test_a_caller_cancelled_before_its_turn_writes_nothing(env: Env, group: GroupCommit) -> None:
    """A request whose client went away while it waited for the transaction: its message is not stored later
    behind its back (with another caller's batch)."""
    async with group.lock:
        gone = asyncio.create_task(group.execute(INSERT, _row("gone")))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
    assert await group.execute(INSERT, _row("stays")) == 1
    assert await _subjects(env) == ["stays"]


async def test_transaction_commits_or_rolls_back_its_work(env: Env, group: GroupCommit) -> None:
    def work(connection: Connection) -> int:
        connection.execute(INSERT, _row("in a transaction"))
        return 7

    assert await group.transaction(work) == 7

    def failing(connection: Connection) -> None:
        connection.execute(INSERT, _row("rolled back"))
        raise LookupError("work failed")

    with pytest.raises(LookupError):
        await group.transaction(failing, sync=False)
    assert await _subjects(env) == ["in a transaction"]
    assert await group.execute(TOUCH, {"_subject": "in a transaction", "_error": "after"}, sync=False) == 1


@pytest.mark.parametrize("sync", [True, False])
async def test_only_unsynced_writes_commit_without_waiting_for_the_disk(
    env: Env, group: GroupCommit, sync: bool
) -> None:
    """What the database is told for each kind of write: a message accepted (202) is on the disk when its
    caller resumes; a delivery's record or a claim is committed without waiting for the disk."""
    sqlite = env.services.db.is_sqlite

    def setting(connection: Connection) -> str:
        query = "PRAGMA synchronous" if sqlite else "SHOW synchronous_commit"
        return str(connection.exec_driver_sql(query).scalar_one())

    # SQLite: 2 is FULL (every commit synced), 1 NORMAL (the write-ahead log synced at checkpoints).
    expected = {(True, True): "2", (True, False): "1", (False, True): "on", (False, False): "off"}
    assert await group.transaction(setting, sync=sync) == expected[sqlite, sync]
    # The other kind next, on the same connection (SQLite: one writer connection, told before each transaction).
    assert await group.transaction(setting, sync=not sync) == expected[sqlite, not sync]
    # And the engine's own connections (sessions, the API's reads) keep syncing every commit.
    async with env.services.db.engine.connect() as connection:
        assert await connection.run_sync(setting) == expected[sqlite, True]
    # An unsynced write is committed for every reader.
    await group.execute(INSERT, _row("visible"), sync=sync)
    assert await _subjects(env) == ["visible"]

"""Claiming reads only the messages it takes: each kind of due message through ``ix_outbox_due`` in claiming
order, merged; not the whole history of the account (sent messages pile up by the million)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, update

from mailgate.outbox import queue
from mailgate.store.models import OutboxMessageRow

from .conftest import Env

Row = OutboxMessageRow
LEASE = timedelta(seconds=120)


async def _set(env: Env, message_id: str, **values: Any) -> None:
    async with env.services.db.session() as session:
        await session.execute(update(Row).where(Row.id == message_id).values(**values))


async def _claim(env: Env, now: datetime, limit: int, max_bytes: int = 1 << 30) -> list[str]:
    def work(connection: Connection) -> list[queue.Claimed]:
        return queue.claim(
            connection, account_id="default", owner="test", now=now, lease=LEASE, limit=limit,
            max_bytes=max_bytes,
        )  # fmt: skip

    return [row.id for row in await env.services.outbox.writes.transaction(work)]


async def test_claims_the_oldest_due_of_every_kind_in_order(env: Env) -> None:
    now = env.clock()
    at = [now - timedelta(minutes=60 - i) for i in range(10)]
    ids = [await env.post(to=[f"r{i}@example.com"], **{"from": "me@example.com"}) for i in range(10)]
    # One of each kind of due message, their next attempts interleaved; and some that are not due.
    await _set(env, ids[0], status="retrying", next_attempt_at=at[3])
    await _set(env, ids[1], status="sending", next_attempt_at=at[1], lease_owner="dead", lease_expires_at=at[9])
    await _set(env, ids[2], next_attempt_at=at[2])
    await _set(env, ids[3], status="retrying", next_attempt_at=at[0])
    await _set(env, ids[4], next_attempt_at=at[4])
    await _set(env, ids[5], status="sending", next_attempt_at=at[5], lease_owner="alive", lease_expires_at=now + LEASE)
    await _set(env, ids[6], next_attempt_at=now + timedelta(minutes=5))  # not yet
    await _set(env, ids[7], status="sent", next_attempt_at=at[0], sent_at=at[0])
    await _set(env, ids[8], status="held", next_attempt_at=at[0])
    await _set(env, ids[9], status="failed", next_attempt_at=at[0])
    # Oldest next attempt first, whatever its kind; the limit counts across kinds.
    assert await _claim(env, now, limit=3) == [ids[3], ids[1], ids[2]]
    assert await _claim(env, now, limit=10) == [ids[0], ids[4]]
    assert await _claim(env, now, limit=10) == []


async def test_ties_go_to_the_first_created(env: Env) -> None:
    now = env.clock()
    ids = [await env.post(to=[f"r{i}@example.com"], **{"from": "me@example.com"}) for i in range(4)]
    for i, message_id in enumerate(ids):
        env.clock.advance(1)
        await _set(env, message_id, next_attempt_at=now, created_at=now + timedelta(seconds=10 - i))
    # The same next attempt: the first created first, whichever was queued first.
    assert await _claim(env, now, limit=10) == [ids[3], ids[2], ids[1], ids[0]]


async def test_a_claim_holds_its_bodies_under_a_byte_budget(env: Env) -> None:
    """The bodies a claim reads into memory add up to at most max_bytes, in claiming order; the first in line is
    claimed alone when it is larger (a worker must send it some time)."""
    now = env.clock()
    ids = [
        await env.post(text=f"{'x' * 60 * (i + 1)}\n" * 100, to=[f"r{i}@example.com"], **{"from": "me@example.com"})
        for i in range(4)
    ]
    sizes = {row_id: len(await env.stored_raw(row_id)) for row_id in ids}
    assert sorted(sizes.values()) == [sizes[row_id] for row_id in ids]  # in claiming order, growing
    assert await _claim(env, now, limit=10, max_bytes=sizes[ids[0]] + sizes[ids[1]]) == ids[:2]
    assert await _claim(env, now, limit=10, max_bytes=sizes[ids[2]] - 1) == [ids[2]]  # larger, first in line
    assert await _claim(env, now, limit=10, max_bytes=1) == [ids[3]]
    claimed = await env.services.outbox.writes.transaction(
        lambda connection: queue.claim(
            connection, account_id="default", owner="t", now=now + 2 * LEASE, lease=LEASE, limit=10,
            max_bytes=1 << 30,
        )
    )  # fmt: skip
    assert {row.raw for row in claimed} == {b""}  # read after the claim's transaction
    async with env.services.db.engine.connect() as connection:
        claimed = await connection.run_sync(queue.with_bodies, claimed)
    # The leases ran out: claimed again, with their bodies as stored.
    assert [(row.id, row.size, row.raw) for row in claimed] == [
        (row_id, sizes[row_id], await env.stored_raw(row_id)) for row_id in ids
    ]


@contextlib.contextmanager
def _statements() -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements run on the database meanwhile, with their parameters as the driver gets them (but
    the ``PRAGMA synchronous`` that starts each of the outbox's SQLite transactions)."""
    seen: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if not statement.startswith("PRAGMA synchronous"):
            seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before)


def _plan(connection: Connection, statement: str, parameters: Any) -> str:
    rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return " | ".join(str(row[-1]) for row in rows)


# PostgreSQL's planner chooses by table statistics; the behaviour tests above run there too.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_claim_reads_no_more_than_it_takes(env: Env) -> None:
    """On SQLite: every statement of a claim is an index search, never a scan of the table; the due messages
    come in claiming order from ix_outbox_due (no sort), expired leases through it too (status sending: those
    few are sorted), and the UPDATE finds the claimed rows by primary key (not every message of the account, or
    every queued one, through another index)."""
    for i in range(30):
        await env.post(to=[f"r{i}@example.com"], **{"from": "me@example.com"})
    async with env.services.db.session() as session:
        await session.execute(update(Row).values(status="sent", sent_at=env.clock()))
    for i in range(5):
        await env.post(to=[f"due{i}@example.com"], **{"from": "me@example.com"})

    def work(connection: Connection) -> list[queue.Claimed]:
        claimed = queue.claim(
            connection, account_id="default", owner="t", now=env.clock(), lease=LEASE, limit=3, max_bytes=1 << 20
        )
        return queue.with_bodies(connection, claimed)

    with _statements() as selects:
        assert len(await env.services.outbox.writes.transaction(work)) == 3
    # The write lock taken first; queued, retrying, expired leases; the claim itself; the claimed bodies.
    kinds = ["UPDATE", "SELECT", "SELECT", "SELECT", "UPDATE", "SELECT"]
    assert [statement.split()[0] for statement, _ in selects] == kinds

    def plans(connection: Connection) -> list[str]:
        return [_plan(connection, statement, parameters) for statement, parameters in selects]

    found = await env.services.outbox.writes.transaction(plans)
    bodies = found.pop()
    assert bodies.startswith("SEARCH outbox_bodies USING INDEX") and "(id=?)" in bodies, bodies  # primary key
    for plan in found:
        assert "SEARCH outbox_messages USING INDEX" in plan and "SCAN outbox_messages" not in plan, plan
    in_order = [plan for plan in found if "USING INDEX ix_outbox_due (account_id=? AND status=? AND" in plan]
    assert len(in_order) == 2, found
    assert all("TEMP B-TREE" not in plan for plan in in_order), in_order
    assert "(id=?)" in found[-1] and "MULTI-INDEX" not in found[-1], found[-1]  # by primary key


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_sending_window_counts_through_indexes(env: Env) -> None:
    """On SQLite: the per-minute and per-day limits count sent and sending messages through ix_outbox_sent and
    ix_outbox_due, not by reading every message of the account."""
    now = env.clock()
    ids = [await env.post(to=[f"r{i}@example.com"], **{"from": "me@example.com"}) for i in range(5)]
    await _set(env, ids[0], status="sent", sent_at=now - timedelta(minutes=30))
    await _set(env, ids[1], status="sent", sent_at=now - timedelta(seconds=30))
    await _set(env, ids[2], status="sending", lease_owner="w", lease_expires_at=now + LEASE)
    await _set(env, ids[3], status="sending", lease_owner="w", lease_expires_at=now - timedelta(seconds=1))
    since = now - timedelta(minutes=1)

    def work(connection: Connection) -> int:
        return queue.in_window(connection, "default", since, now)

    with _statements() as seen:
        count = await env.services.outbox.writes.transaction(work)
    [(statement, parameters)] = seen

    def explain(connection: Connection) -> list[str]:
        return _plan(connection, statement, parameters).split(" | ")

    plan = await env.services.outbox.writes.transaction(explain)
    assert count == 2  # sent within the minute, and the one being sent under a live lease
    assert not any(step.startswith("SCAN outbox_messages") for step in plan), plan
    assert any("ix_outbox_sent (account_id=? AND sent_at>?)" in step for step in plan), plan
    assert any("ix_outbox_due (account_id=? AND status=?)" in step for step in plan), plan

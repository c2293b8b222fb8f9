"""The outbox table's queries: claiming under a lease, recording attempts, holding and releasing.

Claiming is ``SELECT id ... LIMIT n FOR UPDATE SKIP LOCKED`` then ``UPDATE ... WHERE id IN (...) AND
<still due> RETURNING ...`` in one transaction: on PostgreSQL the row locks make concurrent workers skip
each other's rows; on SQLite (no row locks) the UPDATE re-checks that each row is still due under the
database's single write lock, so a row claimed meanwhile by another process is not taken twice.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Update, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import OutboxMessageRow
from .policy import CLAIMABLE, Status

__all__ = ["Claimed", "claim", "count_by_status", "finish", "hold_account", "in_window", "release_held", "requeue"]

Row = OutboxMessageRow


def _due_kinds(now: datetime, busy: Collection[str], status: Any = Row.status) -> list[Any]:
    """The kinds of due message: queued or retrying whose time has come, and claimed by a worker that died
    (or hung) before finishing, its lease run out (not the ones this worker is still sending, ``busy``,
    whatever the clock says).  ``status``: the column, or an expression of it."""
    kinds = [and_(status == value, Row.next_attempt_at <= now) for value in CLAIMABLE]
    kinds.append(and_(status == Status.SENDING.value, Row.lease_expires_at < now, Row.id.not_in(list(busy))))
    return kinds


@dataclass(frozen=True)
class Claimed:
    """A message claimed for sending: what the worker needs of its row (read without the ORM)."""

    id: str
    sender: str
    recipients: list[str]
    raw: bytes = field(repr=False)
    attempts: int
    recipient_results: dict[str, Any]
    next_attempt_at: datetime
    created_at: datetime
    deadline_at: datetime


_CLAIMED = [Row.__table__.c[f.name] for f in fields(Claimed)]


def claim(
    connection: Connection,
    *,
    account_id: str,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    busy: Collection[str] = (),
) -> list[Claimed]:
    """Claim up to ``limit`` due messages of ``account_id`` for ``owner`` until ``now + lease``.

    ``busy``: ids the caller is still working on (never taken back from it, even with an expired lease).
    Synchronous, on a Core connection: run it through ``Outbox.writes.transaction``.
    """
    if limit <= 0:
        return []
    # Two steps, not UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED): PostgreSQL may run
    # such a subquery more than once and update more than n rows.
    if connection.dialect.name == "sqlite":
        # Take the database's write lock first (a no-op write), so that two processes do not both select
        # the same rows and one of them come away empty-handed.
        connection.execute(update(Row).where(Row.id == "").values(status=Row.status))
    ids = _oldest_due(connection, account_id, now, busy, limit)
    if not ids:
        return []
    stmt = (
        update(Row)
        # The ids are looked up by primary key, and the conditions checked again on each (a safeguard: the
        # rows are locked, by FOR UPDATE on PostgreSQL, by the write lock taken first on SQLite).  Not the
        # account, and the status as an expression no index serves (status || ''): otherwise SQLite reads
        # every message of the account, or every queued one, through an index instead.
        .where(Row.id.in_(ids), or_(*_due_kinds(now, busy, status=Row.status + "")))
        .values(status=Status.SENDING.value, lease_owner=owner, lease_expires_at=now + lease, updated_at=now)
        .returning(*_CLAIMED)
    )
    rows = [Claimed(**r._mapping) for r in connection.execute(stmt)]
    rows.sort(key=lambda r: (r.next_attempt_at, r.created_at))
    return rows


def _oldest_due(connection: Connection, account_id: str, now: datetime, busy: Collection[str], limit: int) -> list[str]:
    """The ids of the ``limit`` due messages first in line (by next attempt, then creation).

    One query per kind of due message, each read in that order from ``ix_outbox_due`` and stopped after
    ``limit`` rows, then merged: a single query with OR between the kinds reads every message of the account
    (the sent history too) and sorts them, on every claim.
    """
    order = (Row.next_attempt_at, Row.created_at)
    found: list[Any] = []
    for kind in _due_kinds(now, busy):
        query = select(Row.id, *order).where(Row.account_id == account_id, kind).order_by(*order).limit(limit)
        found += connection.execute(query.with_for_update(skip_locked=True))  # FOR UPDATE: PostgreSQL only
    found.sort(key=lambda row: (row.next_attempt_at, row.created_at))
    return [row.id for row in found[:limit]]


def finish(message_id: str, owner: str, values: dict[str, Any]) -> tuple[Update, dict[str, Any]]:
    """The write recording the end of an attempt; it changes no row when ``owner`` no longer holds the lease."""
    return _finish_statement(frozenset(values)), {"_id": message_id, "_owner": owner, **values}


@functools.lru_cache(maxsize=64)
def _finish_statement(columns: frozenset[str]) -> Update:
    # One statement per set of columns (a handful: sent, retrying, failed, held), built once: building and
    # caching a statement costs more than running it.
    return (
        update(Row)
        .where(Row.id == bindparam("_id"), Row.lease_owner == bindparam("_owner"), Row.status == Status.SENDING.value)
        .values(lease_owner=None, lease_expires_at=None, **{name: bindparam(name) for name in sorted(columns)})
    )


async def requeue(session: AsyncSession, ids: Sequence[str], owner: str, values: dict[str, Any]) -> None:
    """Give claimed messages back without an attempt (their connection could not be set up)."""
    if ids:
        await session.execute(
            update(Row)
            .where(Row.id.in_(ids), Row.lease_owner == owner, Row.status == Status.SENDING.value)
            .values(lease_owner=None, lease_expires_at=None, **values)
            .execution_options(synchronize_session=False)
        )


async def hold_account(session: AsyncSession, account_id: str, now: datetime, code: str, reason: str) -> int:
    """Hold every waiting message of the account (the administrator must act first)."""
    result = await session.execute(
        update(Row)
        .where(Row.account_id == account_id, Row.status.in_(CLAIMABLE))
        .values(status=Status.HELD.value, last_error_code=code, last_error=reason, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def release_held(session: AsyncSession, account_id: str, now: datetime) -> int:
    """Queue the held messages of the account again, due now."""
    result = await session.execute(
        update(Row)
        .where(Row.account_id == account_id, Row.status == Status.HELD.value)
        .values(status=Status.QUEUED.value, next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def has_held(session: AsyncSession, account_id: str) -> bool:
    found = await session.execute(
        select(Row.id).where(Row.account_id == account_id, Row.status == Status.HELD.value).limit(1)
    )
    return found.first() is not None


def in_window(connection: Connection, account_id: str, since: datetime, now: datetime) -> int:
    """Messages sent since ``since`` plus those being sent now: what counts against a sending limit."""
    result = connection.execute(
        select(func.count())
        .select_from(Row)
        .where(
            Row.account_id == account_id,
            or_(
                Row.sent_at >= since,
                and_(Row.status == Status.SENDING.value, Row.lease_expires_at >= now),
            ),
        )
    )
    return int(result.scalar_one())


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    result = await session.execute(select(Row.status, func.count()).group_by(Row.status))
    counts = {status.value: 0 for status in Status}
    counts.update({str(status): int(n) for status, n in result.all()})
    return counts

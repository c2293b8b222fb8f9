"""The outbox table's queries: claiming under a lease, recording attempts, holding and releasing.

Claiming is ``SELECT id ... LIMIT n FOR UPDATE SKIP LOCKED`` then ``UPDATE ... WHERE id IN (...) AND
<still due> RETURNING ...`` in one transaction: on PostgreSQL the row locks make concurrent workers skip
each other's rows; on SQLite (no row locks) the UPDATE re-checks that each row is still due under the
database's single write lock, so a row claimed meanwhile by another process is not taken twice.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Integer, Update, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import OutboxBodyRow, OutboxMessageRow, UtcDateTime
from .policy import CLAIMABLE, Status

__all__ = [
    "Claimed",
    "claim",
    "delete_sent_before",
    "finish",
    "hold_account",
    "in_window",
    "release_held",
    "requeue",
    "with_bodies",
]

Row = OutboxMessageRow


def _due_kinds(status: Any = Row.status) -> list[Any]:
    """The kinds of due message: queued or retrying whose time has come, and claimed by a worker that died
    (or hung) before finishing, its lease run out.  Parameter ``now``; ``status``: the column, or an
    expression of it."""
    kinds = [and_(status == value, Row.next_attempt_at <= _NOW) for value in CLAIMABLE]
    kinds.append(and_(status == Status.SENDING.value, Row.lease_expires_at < _NOW))
    return kinds


_NOW = bindparam("now", type_=UtcDateTime())


@dataclass(frozen=True)
class Claimed:
    """A message claimed for sending: what the worker needs of its row and its body (read without the ORM)."""

    id: str
    sender: str
    recipients: list[str]
    size: int
    attempts: int
    recipient_results: dict[str, Any]
    next_attempt_at: datetime
    created_at: datetime
    deadline_at: datetime
    raw: bytes = field(repr=False)


#: The row's columns a claim returns, in field order (the body is read from its own table).
_CLAIMED = [Row.__table__.c[f.name] for f in fields(Claimed) if f.name != "raw"]


def claim(
    connection: Connection,
    *,
    account_id: str,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    max_bytes: int,
) -> list[Claimed]:
    """Claim up to ``limit`` due messages of ``account_id`` for ``owner`` until ``now + lease``, oldest first,
    whose bodies add up to at most ``max_bytes``, except the first in line, always claimed (alone when it is
    larger).  Their ``raw`` is left empty: read the bodies with :func:`with_bodies` after the transaction,
    which holds the outbox's write lock.

    Synchronous, on a Core connection: run it through ``Outbox.writes.transaction``.
    """
    if limit <= 0:
        return []
    # Two steps: PostgreSQL may run an UPDATE's LIMIT subquery more than once and update more than n rows.
    if connection.dialect.name == "sqlite":
        # The database's write lock first (a no-op write): two processes never select the same rows.
        connection.execute(_LOCK)
    params = {"account": account_id, "now": now, "limit": limit}
    found: list[Sequence[Any]] = []
    for query in _DUE:
        found += connection.execute(query, params).all()
    found.sort(key=lambda row: (row[1], row[2]))  # next_attempt_at, created_at
    ids: list[str] = []
    total = 0
    for row_id, _, _, size in found[:limit]:
        total += size
        if ids and total > max_bytes:
            break
        ids.append(row_id)
    if not ids:
        return []
    rows = connection.execute(_CLAIM, {**params, "ids": ids, "owner": owner, "until": now + lease}).all()
    claimed = [Claimed(*(*row, b"")) for row in rows]  # _CLAIMED: the columns in field order, then raw
    claimed.sort(key=lambda r: (r.next_attempt_at, r.created_at))
    return claimed


def with_bodies(connection: Connection, claimed: list[Claimed]) -> list[Claimed]:
    """``claimed`` with their bodies read (a claimed message's body does not change: no lock needed)."""
    if not claimed:
        return claimed
    found = connection.execute(_BODIES, {"ids": [row.id for row in claimed]})
    bodies: dict[str, bytes] = {row_id: raw for row_id, raw in found}
    return [dataclasses.replace(row, raw=bodies[row.id]) for row in claimed]


# The statements of a claim, with parameters account, now, limit; ids, owner and until for the UPDATE.
_LOCK = update(Row).where(Row.id == "").values(status=Row.status)
_ORDER = (Row.next_attempt_at, Row.created_at)
#: The ``limit`` first in line of each kind of due message, from ``ix_outbox_due`` (then merged: with OR
#: between the kinds, SQLite reads the whole history).  FOR UPDATE SKIP LOCKED: on PostgreSQL only.
_DUE = [
    select(Row.id, *_ORDER, Row.size)
    .where(Row.account_id == bindparam("account"), kind)
    .order_by(*_ORDER)
    .limit(bindparam("limit", type_=Integer()))
    .with_for_update(skip_locked=True)
    for kind in _due_kinds()
]
_CLAIM = (
    update(Row)
    # By primary key, the conditions checked again (a safeguard: the rows are locked), the status as an
    # expression no index serves (status || ''), else SQLite reads the account's messages through an index.
    .where(Row.id.in_(bindparam("ids", expanding=True)), or_(*_due_kinds(status=Row.status + "")))
    .values(
        status=Status.SENDING.value,
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("until", type_=UtcDateTime()),
        updated_at=_NOW,
    )
    .returning(*_CLAIMED)
)
_BODIES = select(OutboxBodyRow.id, OutboxBodyRow.raw).where(OutboxBodyRow.id.in_(bindparam("ids", expanding=True)))


def finish(message_id: str, owner: str, values: dict[str, Any]) -> tuple[Update, dict[str, Any]]:
    """The write recording the end of an attempt; it changes no row when ``owner`` no longer holds the lease."""
    return _finish_statement(tuple(values)), {"_id": message_id, "_owner": owner, **values}


@functools.cache
def _finish_statement(columns: tuple[str, ...]) -> Update:
    """One statement per set of columns (a handful), built once: building one costs more than executing it."""
    return (
        update(Row)
        .where(Row.id == bindparam("_id"), Row.lease_owner == bindparam("_owner"), Row.status == Status.SENDING.value)
        .values(lease_owner=None, lease_expires_at=None, **{name: bindparam(name) for name in columns})
    )


async def requeue(session: AsyncSession, ids: Sequence[str], owner: str, values: dict[str, Any]) -> None:
    """Give claimed messages back without an attempt (their connection could not be set up)."""
    if ids:
        where = (Row.id.in_(ids), Row.lease_owner == owner, Row.status == Status.SENDING.value)
        await _update(session, where, lease_owner=None, lease_expires_at=None, **values)


async def hold_account(session: AsyncSession, account_id: str, now: datetime, code: str, reason: str) -> int:
    """Hold every waiting message of the account (the administrator must act first)."""
    where = (Row.account_id == account_id, Row.status.in_(CLAIMABLE))
    return await _update(
        session, where, status=Status.HELD.value, last_error_code=code, last_error=reason, updated_at=now
    )


async def release_held(session: AsyncSession, account_id: str, now: datetime) -> int:
    """Queue the held messages of the account again, due now."""
    where = (Row.account_id == account_id, Row.status == Status.HELD.value)
    return await _update(session, where, status=Status.QUEUED.value, next_attempt_at=now, updated_at=now)


async def _update(session: AsyncSession, where: Sequence[Any], **values: Any) -> int:
    """Set ``values`` on the rows matching every condition of ``where``; how many rows changed."""
    statement = update(Row).where(*where).values(**values).execution_options(synchronize_session=False)
    return int(getattr(await session.execute(statement), "rowcount", 0) or 0)


def delete_sent_before(connection: Connection, *, account_id: str, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` messages of ``account_id`` sent before ``cutoff``, with their bodies; how many."""
    params = {"account": account_id, "cutoff": cutoff, "limit": limit}
    ids = [row[0] for row in connection.execute(_SENT_BEFORE, params)]
    if ids:  # their bodies go with them (ON DELETE CASCADE, as in Outbox.purge)
        connection.execute(delete(Row).where(Row.id.in_(ids)))
    return len(ids)


# Oldest first, through ix_outbox_sent (account, sent_at; sent messages only).
_SENT_BEFORE = (
    select(Row.id)
    .where(
        Row.account_id == bindparam("account"),
        Row.sent_at.is_not(None),
        Row.sent_at <= bindparam("cutoff", type_=UtcDateTime()),
        Row.status == Status.SENT.value,
    )
    .order_by(Row.sent_at)
    .limit(bindparam("limit", type_=Integer()))
)


def in_window(connection: Connection, account_id: str, since: datetime, now: datetime) -> int:
    """Messages sent since ``since`` plus those being sent now: what counts against a sending limit."""
    return int(connection.execute(_IN_WINDOW, {"account": account_id, "since": since, "now": now}).scalar_one())


_SINCE = bindparam("since", type_=UtcDateTime())
# Two counts, each through its index (ix_outbox_sent; ix_outbox_due): with OR, every message is read.
_SENT_SINCE = select(func.count()).where(Row.account_id == bindparam("account"), Row.sent_at >= _SINCE)
_SENDING = select(func.count()).where(
    Row.account_id == bindparam("account"),
    Row.status == Status.SENDING.value,
    Row.lease_expires_at >= _NOW,
    or_(Row.sent_at.is_(None), Row.sent_at < _SINCE),
)
_IN_WINDOW = select(_SENT_SINCE.scalar_subquery() + _SENDING.scalar_subquery())

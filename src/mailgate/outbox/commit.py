"""Group commit: writes submitted at the same time share one transaction (and one disk sync).

Every caller still returns only after its own write is committed, so "202 only after commit" and "a
delivery is recorded before the connection takes the next message" hold; concurrent callers (API requests,
a worker's connections) just stop paying one fsync each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from ..store import Database

__all__ = ["GroupCommit"]

T = TypeVar("T")
#: Operations get a Core connection (no ORM unit of work: these are the hot path, one per message).
Operation = Callable[[AsyncConnection], Awaitable[Any]]


class GroupCommit:
    """Runs ``await group.run(op)`` operations in shared transactions, one batch at a time."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._lock: asyncio.Lock | None = None

    @property
    def lock(self) -> asyncio.Lock:
        """Held while a batch commits.  Other write transactions of this process on the outbox take it too:
        on SQLite, two of them at once would make one wait in SQLite's busy handler (sleeping)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def run(self, operation: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``operation(connection)`` and commit; returns its result once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((operation, future))
        async with self.lock:
            if not future.done():
                # Everything queued while the previous batch was committing goes in this one.
                batch, self._pending = self._pending, []
                await self._commit(batch)
        result: T = future.result()
        return result

    async def _commit(self, batch: list[tuple[Operation, asyncio.Future[Any]]]) -> None:
        try:
            async with self._db.engine.begin() as connection:
                results = [await operation(connection) for operation, _ in batch]
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
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)

"""A budget of bytes shared by concurrent work: at most ``total`` reserved at once, waiters served in order.

Large uploads to the messages API each take several copies of their body while they are composed; without a
bound, a few applications sending large attachments at once could take the process's memory with them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

__all__ = ["ByteBudget"]


class ByteBudget:
    """``async with budget.reserve(size):`` waits until ``size`` bytes are free (first come, first served: a
    large reservation is not overtaken by smaller ones arriving after it), holds them, and frees them on exit.
    A reservation larger than the whole budget takes all of it (it runs alone)."""

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError("a budget must be greater than 0")
        self.total = total
        self._available = total
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def __repr__(self) -> str:
        return f"<ByteBudget {self.reserved:,} of {self.total:,} reserved, {self.waiting} waiting>"

    @property
    def reserved(self) -> int:
        return self.total - self._available

    @property
    def waiting(self) -> int:
        return sum(1 for _, future in self._waiters if not future.done())

    @contextlib.asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[int]:
        """Hold ``size`` bytes (at most the total) for the ``async with`` block; the bytes held."""
        size = min(max(size, 0), self.total)
        if not self._waiters and size <= self._available:
            self._available -= size
        else:
            waiter = asyncio.get_running_loop().create_future()
            entry = (size, waiter)
            self._waiters.append(entry)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._available += size  # granted just as the caller gave up: hand it on
                else:
                    with contextlib.suppress(ValueError):  # _grant drops waiters that gave up
                        self._waiters.remove(entry)
                self._grant()
                raise
        try:
            yield size
        finally:
            self._available += size
            self._grant()

    def _grant(self) -> None:
        # In order: the first waiter that does not fit yet holds back those behind it.
        while self._waiters:
            size, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if size > self._available:
                return
            self._waiters.popleft()
            self._available -= size
            waiter.set_result(None)

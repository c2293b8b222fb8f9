"""Concurrent callers that need the same read share one run of it ("single flight").

A verified API key is cached for a second, then falls due for every concurrent request with that key at
once: they share one database lookup, and one failed lookup fails only the requests that waited for it.
Per key: the lookups of other keys (an unknown key, tried again and again) do not queue behind each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """``await flight.run(key, read)``: runs ``read()`` unless a run for ``key`` is under way, whose result
    (or exception) every caller then gets.  A caller that is cancelled does not cancel the others' run."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    def __repr__(self) -> str:
        return f"<SingleFlight running={len(self._running)}>"

    async def run(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(read())
            running.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(running)

    def _landed(self, key: K, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failure every caller left before is not "never retrieved"

"""Login rate limiting, in memory: failed sign-ins per client address and user name, and per address.

One limiter counts both ways of guessing the admin password: the login form and HTTP Basic on the API
(:func:`mailgate.web.deps.require_admin`).  The address is the socket's, or what a trusted proxy reports
(:mod:`.proxies`), never an ``X-Forwarded-For`` header the client wrote itself.

In memory is enough for one admin account (OWASP: throttle by account and by source).  Several processes
each count on their own, which still bounds guessing to a few attempts per window per process.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["LoginLimiter"]

#: The per-address counter's user part (a NUL cannot be typed into the login form's user name).
_ANY = "\x00"


class LoginLimiter:
    """Refuses sign-in attempts after ``per_user`` failures for one (address, user) pair, or ``per_address``
    failures from one address, within ``window`` seconds.  A successful sign-in clears the pair's count."""

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 20,
        window: float = 15 * 60,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_user, self.per_address, self.window = per_user, per_address, window
        self._max_keys = max_keys
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        cutoff = self._clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, address: str, user: str) -> float:
        """Seconds until this address may try ``user`` again; 0 when it may try now."""
        waits = []
        for key, limit in (((address, user.lower()), self.per_user), ((address, _ANY), self.per_address)):
            times = self._recent(key)
            if len(times) >= limit:
                waits.append(times[-limit] + self.window - self._clock())
        return max(waits, default=0.0)

    def failed(self, address: str, user: str) -> None:
        now = self._clock()
        if len(self._failures) >= self._max_keys:
            # Bounded memory: forget the pairs whose last failure is oldest.
            for key in sorted(self._failures, key=lambda k: self._failures[k][-1])[: self._max_keys // 10]:
                del self._failures[key]
        for key in ((address, user.lower()), (address, _ANY)):
            self._failures.setdefault(key, deque(maxlen=max(self.per_user, self.per_address))).append(now)

    def succeeded(self, address: str, user: str) -> None:
        self._failures.pop((address, user.lower()), None)

"""Against password guessing: a growing delay before the answer to a failed login, per client address.

The delay is an ``asyncio.sleep`` in the failing session only: other clients, and other sessions of the same
address that log in correctly, are never stalled.  Generated passwords cannot be guessed anyway; this keeps a
misconfigured or hostile client from hammering the database and the logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FailedLogins", "RelayMetrics"]


class FailedLogins:
    """Failed logins per client address, and the delay the next failure's answer waits.

    The n-th failure within ``forget_after`` seconds of the previous one waits ``base * 2**(n-1)`` seconds, at
    most ``ceiling``; a successful login from the address forgets its failures.
    """

    def __init__(
        self,
        *,
        base: float = 0.5,
        ceiling: float = 30.0,
        forget_after: float = 900.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self.ceiling = ceiling
        self.forget_after = forget_after
        self.max_addresses = max_addresses
        self._clock = clock
        #: address -> (failures, time of the last one).
        self._failures: dict[str, tuple[int, float]] = {}

    def failed(self, address: str) -> float:
        """Record a failure from ``address``; the seconds its answer should wait."""
        now = self._clock()
        count, last = self._failures.pop(address, (0, now))
        count = count + 1 if now - last < self.forget_after else 1
        if len(self._failures) >= self.max_addresses:
            # The oldest entry goes (dicts keep insertion order; a failing address was just moved to the end).
            self._failures.pop(next(iter(self._failures)))
        self._failures[address] = (count, now)
        return float(min(self.ceiling, self.base * 2 ** (count - 1)))

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def failures(self, address: str) -> int:
        """Recent failures from ``address`` (0 once forgotten)."""
        count, last = self._failures.get(address, (0, 0.0))
        return count if self._clock() - last < self.forget_after else 0


@dataclass
class RelayMetrics:
    """Counters of the relay since this process started, for ``/metrics``."""

    sessions: int = 0
    logins_failed: int = 0
    senders_refused: int = 0
    messages_accepted: int = 0

    def render(self) -> str:
        """The Prometheus text of these counters."""
        out: list[str] = []
        for name, value, text in (
            ("sessions", self.sessions, "SMTP relay connections accepted by this process."),
            ("logins_failed", self.logins_failed, "Failed AUTH attempts at the SMTP relay."),
            ("senders_refused", self.senders_refused, "MAIL FROM refused: the user may not send as that sender."),
            ("messages_accepted", self.messages_accepted, "Messages the SMTP relay committed to the outbox."),
        ):
            out += [
                f"# HELP mailgate_relay_{name}_total {text}",
                f"# TYPE mailgate_relay_{name}_total counter",
                f"mailgate_relay_{name}_total {value}",
            ]
        return "\n".join(out) + "\n"

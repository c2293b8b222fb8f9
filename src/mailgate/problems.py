"""What needs an administrator's attention, per account: the shared vocabulary of health, alerts and doctor.

Core (no I/O, imports nothing above it).  A :class:`Problem` is a condition, not an event: it exists while
its cause lasts.  ``/healthz`` lists the current ones, the admin pages show them in a banner, and the alert
notifier compares successive lists (by :attr:`Problem.key`) to send one notification when a condition starts
and one when it is resolved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["Problem", "ProblemSource"]


@dataclass(frozen=True)
class Problem:
    """One condition that needs attention.  Never carries a secret."""

    #: The account concerned (``default`` for the guide's pages); ``""`` for the whole service.
    account: str
    #: Stable machine-readable code, e.g. ``reauthorization_required``, ``client_secret_expiring``,
    #: ``delivery_failing``, ``testing_grant_expiring``.
    code: str
    #: What is wrong, in one sentence an administrator understands.
    message: str
    #: What to do about it, concretely (the page, the button, the provider setting).
    fix: str
    #: When the condition started (as far as mailgate knows).
    since: datetime
    #: Path of the admin page where it is fixed (relative to the context path), or ``""``.
    link: str = ""
    #: ``critical`` makes ``/healthz`` answer ``degraded``; a ``warning`` (e.g. a client secret expiring in
    #: 30 days) is shown in the banner and alerted on, but the service is still healthy.
    severity: Literal["critical", "warning"] = "critical"

    def to_dict(self, link_prefix: str = "") -> dict[str, str]:
        """The problem as JSON (``/healthz``, the banner, an alert's webhook body): ``link`` prefixed with
        ``link_prefix`` (the context path, or the public base URL and the context path)."""
        return {
            "account": self.account,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "since": self.since.isoformat(),
            "link": link_prefix + self.link if self.link else "",
        }

    @property
    def key(self) -> tuple[str, str]:
        """Identity of the condition across successive checks: one alert per key when it starts and ends."""
        return (self.account, self.code)


#: Returns the problems that exist now (an empty list when all is well).
ProblemSource = Callable[[], Awaitable[list[Problem]]]

"""What to do after an attempt: pure functions over errors and times (no I/O).

- Transient failures (4xx replies, disconnects, timeouts, an unreachable token endpoint) are retried with
  exponential backoff and jitter until the message's deadline, then the message fails.
- Permanent failures of the message itself (5xx to MAIL, RCPT or DATA) fail it at once, reply recorded.
- Problems only an administrator can solve (consent revoked or missing, refused credentials, a server
  configuration that cannot work) hold the account's messages until the configuration changes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..errors import (
    ConfigurationError,
    CredentialsRejectedError,
    DeliveryError,
    MailgateError,
    OAuthError,
    ReauthorizationRequiredError,
    TransientDeliveryError,
)

__all__ = ["CLAIMABLE", "FINAL", "Outcome", "Status", "Verdict", "backoff", "classify", "next_attempt"]


class Status(enum.StrEnum):
    """The life of an outbox message."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    RETRYING = "retrying"
    HELD = "held"
    FAILED = "failed"


#: Statuses a worker may claim (when due).
CLAIMABLE = (Status.QUEUED.value, Status.RETRYING.value)
#: Statuses no worker will touch again.
FINAL = (Status.SENT.value, Status.FAILED.value)


class Outcome(enum.Enum):
    RETRY = "retry"
    FAIL = "fail"
    HOLD = "hold"


@dataclass(frozen=True)
class Verdict:
    """The decision about one failed attempt, with what to record."""

    outcome: Outcome
    code: str
    message: str
    smtp_code: int | None = None
    smtp_reply: str = ""
    #: The least delay in seconds the server asked for before the next attempt (HTTP ``Retry-After``), if any.
    retry_after: float | None = None


def classify(exc: BaseException, *, connecting: bool) -> Verdict:
    """The verdict for ``exc`` raised while ``connecting`` (connect, TLS, AUTH) or sending one message.

    A failure while connecting is not the message's fault: a non-retryable one means the account cannot
    send at all (consent, credentials, TLS configuration), so the account's messages are held instead of
    failed; the administrator's fix releases them.
    """
    if not isinstance(exc, MailgateError):
        # A disconnect or timeout that escaped the SMTP layer's mapping: worth another try.
        return Verdict(Outcome.RETRY, "error", f"{type(exc).__name__}: {exc}")
    text = str(exc)
    smtp_code = exc.reply_code if isinstance(exc, DeliveryError) else None
    smtp_reply = exc.reply if isinstance(exc, DeliveryError) else ""
    if isinstance(exc, ReauthorizationRequiredError | ConfigurationError | CredentialsRejectedError):
        return Verdict(Outcome.HOLD, exc.code, text, smtp_code, smtp_reply)
    if exc.retryable:
        wait = exc.retry_after if isinstance(exc, TransientDeliveryError) else None  # the server's Retry-After
        return Verdict(Outcome.RETRY, exc.code, text, smtp_code, smtp_reply, wait)
    if connecting or isinstance(exc, OAuthError):
        # invalid_client, a refused TLS certificate, no STARTTLS...: a configuration problem.
        return Verdict(Outcome.HOLD, exc.code, text, smtp_code, smtp_reply)
    return Verdict(Outcome.FAIL, exc.code, text, smtp_code, smtp_reply)


def backoff(attempts: int, *, base: float, cap: float, random: Callable[[], float]) -> timedelta:
    """Delay before attempt ``attempts + 1``: ``base * 2**(attempts-1)`` capped, with "equal jitter".

    Half the delay is fixed, half random, so that messages failed together do not come back together
    (AWS Architecture Blog, "Exponential Backoff And Jitter").
    """
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=delay / 2 + random() * delay / 2)


def next_attempt(now: datetime, deadline: datetime, delay: timedelta) -> datetime | None:
    """When to try again, or None when the deadline has passed (the message fails)."""
    if now >= deadline:
        return None
    return min(now + delay, deadline)

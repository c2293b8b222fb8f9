"""Recording the end of an attempt: sent (with per-recipient results), retrying with backoff, held, failed.

Each result is committed before the connection hands over its next message (see the worker), without
waiting for the disk (see :mod:`.commit`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..transport import SendResult
from . import queue
from .policy import Outcome, Status, Verdict, backoff, next_attempt
from .queue import Claimed
from .service import Outbox

__all__ = ["Recorder", "pending_recipients"]

log = logging.getLogger(__name__)


class Recorder:
    """Writes attempt results for one worker (``owner``: only rows it still holds the lease of)."""

    def __init__(self, outbox: Outbox, owner: str, random: Callable[[], float]) -> None:
        self._outbox = outbox
        self._owner = owner
        self._random = random

    async def sent(self, row: Claimed, result: SendResult) -> None:
        """Record an accepted message (and the recipients refused by the server, one by one)."""
        now = self._outbox.clock()
        results = dict(row.recipient_results or {})
        for rcpt in result.accepted:
            results[rcpt] = {"status": "sent", "code": 250, "reply": result.reply}
        pending = False
        for rcpt, (code, text) in result.refused.items():
            transient = 400 <= code < 500
            pending = pending or transient
            results[rcpt] = {"status": "pending" if transient else "failed", "code": code, "reply": text}
        values: dict[str, Any] = {"attempts": row.attempts + 1, "recipient_results": results, "updated_at": now}
        if pending:
            code, text = next(r for r in result.refused.values() if 400 <= r[0] < 500)
            verdict = Verdict(
                Outcome.RETRY, "smtp_transient", f"Some recipients were refused for now: {text}", code, text
            )
            await self._finish_retry(row, verdict, values, now)
            return
        values.update(status=Status.SENT.value, sent_at=now)
        if result.refused:
            code, text = next(iter(result.refused.values()))
            values.update(
                last_error=f"{len(result.refused)} recipient(s) refused", last_error_code="smtp_permanent",
                smtp_code=code, smtp_reply=text,
            )  # fmt: skip
        if await self._finish(row, values):
            self._outbox.metrics.sent += 1
            self._outbox.metrics.observe_latency((now - row.created_at).total_seconds())

    async def failure(self, row: Claimed, verdict: Verdict) -> datetime | None:
        """Record a failed attempt; the next attempt time when it will be retried."""
        now = self._outbox.clock()
        values: dict[str, Any] = {"attempts": row.attempts + 1, "updated_at": now}
        if verdict.outcome is Outcome.RETRY:
            return await self._finish_retry(row, verdict, values, now)
        values.update(_error_values(verdict))
        if verdict.outcome is Outcome.HOLD:
            values["status"] = Status.HELD.value
            if await self._finish(row, values):
                self._outbox.metrics.held += 1
            log.warning("message %s held: %s", row.id, verdict.message)
            return None
        await self._fail(row, verdict, values)
        log.info("message %s failed: %s", row.id, verdict.message)
        return None

    async def _finish_retry(
        self, row: Claimed, verdict: Verdict, values: dict[str, Any], now: datetime
    ) -> datetime | None:
        settings = self._outbox.settings
        delay = backoff(
            row.attempts + 1,
            base=settings.retry_base_seconds,
            cap=settings.retry_max_delay_seconds,
            random=self._random,
        )
        if verdict.retry_after:  # throttled (HTTP 429/503): never sooner than the server asked
            delay = max(delay, timedelta(seconds=verdict.retry_after))
        when = next_attempt(now, row.deadline_at, delay)
        values.update(_error_values(verdict))
        if when is None:
            values["last_error"] = f"Retry deadline passed; last error: {verdict.message}"
            await self._fail(row, verdict, values)
            return None
        values.update(status=Status.RETRYING.value, next_attempt_at=when)
        if await self._finish(row, values):
            self._outbox.metrics.retries += 1
        log.info("message %s: attempt %d failed (%s), next at %s", row.id, row.attempts + 1, verdict.code, when)
        return when

    async def _fail(self, row: Claimed, verdict: Verdict, values: dict[str, Any]) -> None:
        """Record the message failed for good, with the recipients still pending (none is pending any more)."""
        results = dict(values.get("recipient_results", row.recipient_results) or {})
        for rcpt in pending_recipients(row, results):
            results[rcpt] = {"status": "failed", "code": verdict.smtp_code, "reply": verdict.smtp_reply}
        values.update(status=Status.FAILED.value, recipient_results=results)
        if await self._finish(row, values):
            self._outbox.metrics.failed += 1

    async def _finish(self, row: Claimed, values: dict[str, Any]) -> bool:
        ok = await self._outbox.writes.execute(*queue.finish(row.id, self._owner, values), sync=False) == 1
        if not ok:
            log.warning("message %s: lease lost before its result was recorded", row.id)
        return ok


def _error_values(verdict: Verdict) -> dict[str, Any]:
    return {
        "last_error": verdict.message,
        "last_error_code": verdict.code,
        "smtp_code": verdict.smtp_code,
        "smtp_reply": verdict.smtp_reply,
    }


def pending_recipients(row: Claimed, results: dict[str, Any] | None = None) -> list[str]:
    """Recipients not yet delivered nor refused for good (all of them on the first attempt), by the row's
    ``recipient_results`` or ``results``."""
    results = row.recipient_results if results is None else results
    done = {r for r, v in (results or {}).items() if v.get("status") in ("sent", "failed")}
    return [r for r in row.recipients if r not in done]

"""Recording the end of an attempt: sent (with per-recipient results), retrying with backoff, held, failed.

Each record is kept before the connection hands over its next message (DATA), so a crash can leave at most
one delivered-but-unrecorded message per connection.  A message sent is recorded in the worker's delivery
journal on SQLite (:mod:`.journal`: one ``write``), folded into the outbox within FOLD_DELAY seconds and
before the worker's next claim; elsewhere, and for every other result, committed through the outbox's group
commit.  Neither waits for the disk (kept if mailgate crashes or is killed; on the disk within FOLD_DELAY +
SYNC_DELAY): the connection's next message waits for the record, and a power failure in between costs
sending those messages again, not losing any.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ..smtp import SendResult
from . import queue
from .commit import Write
from .journal import DeliveryJournal, Entry
from .policy import Outcome, Status, Verdict, backoff, next_attempt
from .queue import Claimed
from .service import Outbox

__all__ = ["Recorder", "pending_recipients"]

log = logging.getLogger(__name__)

Row = Claimed
#: Seconds within which a result appended to the delivery journal is folded into the outbox.
FOLD_DELAY = 0.02


class Recorder:
    """Writes attempt results for one worker (``owner``: only rows it still holds the lease of).  With a
    ``journal`` (SQLite), messages sent are recorded there first and folded into the outbox by :meth:`fold`."""

    def __init__(
        self, outbox: Outbox, owner: str, random: Callable[[], float], journal: DeliveryJournal | None = None
    ) -> None:
        self._outbox = outbox
        self._owner = owner
        self._random = random
        self._journal = journal
        #: Journal entries not folded yet, with each message's time from queued to sent (seconds).
        self._unfolded: list[tuple[Entry, float]] = []
        self._folding = asyncio.Lock()
        self._fold_timer: asyncio.TimerHandle | None = None
        self._fold_task: asyncio.Task[None] | None = None
        #: The last append to the journal failed (said once, not for every message).
        self._journal_failing = False

    def __repr__(self) -> str:
        return f"Recorder(owner={self._owner!r}, journal={self._journal!r}, unfolded={len(self._unfolded)})"

    async def sent(self, row: Row, result: SendResult) -> None:
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
        latency = (now - row.created_at).total_seconds()
        if self._journal is not None:
            entry = Entry(row.id, self._owner, values)
            try:
                self._journal.append(entry)
            except OSError as exc:
                # Committed to the outbox instead (if that fails too, the connection stops before its next
                # message): a journal that cannot be written must not let messages go out unrecorded.
                if not self._journal_failing:
                    log.warning("cannot write the delivery journal (%s): recording results in the database", exc)
                self._journal_failing = True
            else:
                if self._journal_failing:
                    log.info("writing the delivery journal again")
                self._journal_failing = False
                self._unfolded.append((entry, latency))
                self._fold_soon()
                return
        if await self._finish(row, values):
            self._count_sent(latency)

    async def fold(self) -> None:
        """Record the journal's entries in the outbox, in one transaction (not waiting for the disk: they are
        in the journal until it is committed); the journal's files emptied or deleted when worth it."""
        if self._journal is None:
            return
        async with self._folding:
            if not self._unfolded:
                return
            pending, self._unfolded = self._unfolded, []
            mark = self._journal.mark()
            try:
                counts = await self._outbox.writes.execute_all(_writes(entry for entry, _ in pending), sync=False)
            except BaseException:
                self._unfolded[:0] = pending  # still in the journal: folded with the next ones
                raise
            self._journal.folded(mark)
        for (entry, latency), count in zip(pending, counts, strict=True):
            if count == 1:
                self._count_sent(latency)
            else:
                _lease_lost(entry.message_id)

    async def recover(self) -> int:
        """Replay the journals of workers that stopped before folding them (see :mod:`.journal`); how many
        results were recorded.  Called before claiming, so that what they sent is not claimed again."""
        if self._journal is None:
            return 0
        recorded = 0
        for orphan in self._journal.orphans():
            writes = _writes(orphan.entries)
            try:
                # On the disk before the file goes.
                replayed = sum(await self._outbox.writes.execute_all(writes, sync=True)) if writes else 0
            except BaseException:
                orphan.release()
                raise
            orphan.discard()
            recorded += replayed
            self._outbox.metrics.sent += replayed
            log.warning(
                "replayed the delivery journal %s of a worker that stopped: %d of its %d result(s) were not recorded "
                "yet",
                orphan.path.name, replayed, len(orphan.entries),
            )  # fmt: skip
        return recorded

    async def close(self) -> None:
        """Fold what is left and delete this worker's journal files."""
        if self._fold_timer is not None:
            self._fold_timer.cancel()
            self._fold_timer = None
        await self.fold()
        if self._journal is not None:
            self._journal.close()

    def _count_sent(self, latency: float) -> None:
        self._outbox.metrics.sent += 1
        self._outbox.metrics.observe_latency(latency)

    def _fold_soon(self) -> None:
        if self._fold_timer is None:
            self._fold_timer = asyncio.get_running_loop().call_later(FOLD_DELAY, self._start_fold)

    def _start_fold(self) -> None:
        self._fold_timer = None
        self._fold_task = asyncio.create_task(self.fold())
        self._fold_task.add_done_callback(_report_fold_failure)

    async def failure(self, row: Row, verdict: Verdict) -> datetime | None:
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
        values["status"] = Status.FAILED.value
        results = dict(row.recipient_results or {})
        for rcpt in pending_recipients(row):
            results[rcpt] = {"status": "failed", "code": verdict.smtp_code, "reply": verdict.smtp_reply}
        values["recipient_results"] = results
        if await self._finish(row, values):
            self._outbox.metrics.failed += 1
        log.info("message %s failed: %s", row.id, verdict.message)
        return None

    async def _finish_retry(self, row: Row, verdict: Verdict, values: dict[str, Any], now: datetime) -> datetime | None:
        settings = self._outbox.settings
        delay = backoff(
            row.attempts + 1,
            base=settings.retry_base_seconds,
            cap=settings.retry_max_delay_seconds,
            random=self._random,
        )
        when = next_attempt(now, row.deadline_at, delay)
        values.update(_error_values(verdict))
        if when is None:
            values["status"] = Status.FAILED.value
            values["last_error"] = f"Retry deadline passed; last error: {verdict.message}"
            if await self._finish(row, values):
                self._outbox.metrics.failed += 1
            return None
        values.update(status=Status.RETRYING.value, next_attempt_at=when)
        if await self._finish(row, values):
            self._outbox.metrics.retries += 1
        log.info("message %s: attempt %d failed (%s), next at %s", row.id, row.attempts + 1, verdict.code, when)
        return when

    async def _finish(self, row: Row, values: dict[str, Any]) -> bool:
        ok = await self._outbox.writes.execute(*queue.finish(row.id, self._owner, values), sync=False) == 1
        if not ok:
            _lease_lost(row.id)
        return ok


def _writes(entries: Iterable[Entry]) -> list[Write]:
    """The UPDATEs recording journal entries (the same as :meth:`Recorder._finish`'s)."""
    return [queue.finish(entry.message_id, entry.owner, entry.values) for entry in entries]


def _lease_lost(message_id: str) -> None:
    log.warning("message %s: lease lost before its result was recorded", message_id)


def _report_fold_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        # The entries stay in the journal: folded before the next claim, or replayed after a restart.
        log.warning("could not record delivered messages from the journal yet: %s", exc)


def _error_values(verdict: Verdict) -> dict[str, Any]:
    return {
        "last_error": verdict.message,
        "last_error_code": verdict.code,
        "smtp_code": verdict.smtp_code,
        "smtp_reply": verdict.smtp_reply,
    }


def pending_recipients(row: Row) -> list[str]:
    """Recipients not yet delivered nor refused for good (all of them on the first attempt)."""
    done = {r for r, v in (row.recipient_results or {}).items() if v.get("status") in ("sent", "failed")}
    return [r for r in row.recipients if r not in done]

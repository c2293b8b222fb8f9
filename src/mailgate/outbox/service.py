"""The outbox as a service: enqueue (idempotent), look up, list, retry and purge messages."""

from __future__ import annotations

import asyncio
import bisect
import functools
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from ..budget import ByteBudget
from ..config import OutboxSettings
from ..configure import ConfigService
from ..errors import MailgateError, NotFoundError, ValidationError
from ..message import Limits, NewMessage
from ..providers import Catalogue
from ..store import Database
from ..store.models import OutboxBodyRow, OutboxMessageRow
from ..store.repository import DEFAULT_ACCOUNT
from . import queue
from .commit import GroupCommit
from .policy import CLAIMABLE, FINAL, Status

__all__ = ["MessageConflictError", "MessageView", "Outbox", "OutboxMetrics", "new_message_id"]

Row = OutboxMessageRow
_INSERT = insert(Row)
_INSERT_BODY = insert(OutboxBodyRow)
#: How long the sender and limits read for new messages are reused.
LIMITS_TTL_SECONDS = 1.0
#: Sent messages deleted per transaction by expire_sent.
EXPIRE_CHUNK = 200

#: Delivery latency buckets (seconds from enqueue to the server's acceptance).
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass
class OutboxMetrics:
    """Counters since this process started (``/metrics``): attempts by outcome, the delivery latency histogram."""

    sent: int = 0
    failed: int = 0
    retries: int = 0
    held: int = 0
    enqueued: int = 0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    latency_sum: float = 0.0

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds


class MessageConflictError(MailgateError):
    """The message is not in a state that allows what was asked."""

    http_status = 409
    code = "conflict"


def new_message_id() -> str:
    """A new message's id: a UUID of version 7 (RFC 9562): the time in milliseconds, then 74 random bits, so
    that ids sort in the order they were made."""
    random = int.from_bytes(os.urandom(10), "big")
    high = ((time.time_ns() // 1_000_000) << 16) | 0x7000 | ((random >> 62) & 0xFFF)  # time, version 7, 12 bits
    low = (0b10 << 62) | (random & ((1 << 62) - 1))  # the variant, 62 random bits
    return str(uuid.UUID(int=high << 64 | low))


@dataclass(frozen=True)
class MessageView:
    """What the API and the CLI show of a message (never its body; its JSON: ``web.messages_api.message_json``)."""

    id: str
    status: str
    account_id: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    message_id: str
    size: int
    attempts: int
    next_attempt_at: datetime | None
    last_error: str
    last_error_code: str
    smtp_code: int | None
    smtp_reply: str
    recipient_results: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None

    @classmethod
    def of(cls, row: Row | dict[str, Any]) -> MessageView:
        """The view of a row, or of the values a row was inserted with (a column they leave out is None)."""
        values: dict[str, Any] = {
            f.name: row.get(f.name) if isinstance(row, dict) else getattr(row, f.name) for f in fields(cls)
        }
        values.update(
            recipients=tuple(values["recipients"]),
            recipient_results=dict(values["recipient_results"] or {}),
            next_attempt_at=values["next_attempt_at"] if values["status"] in CLAIMABLE else None,
        )
        return cls(**values)


class Outbox:
    """Durable queue of messages.  ``enqueue`` returns once the message is committed."""

    def __init__(
        self,
        db: Database,
        config: ConfigService,
        catalogue: Catalogue,
        settings: OutboxSettings,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.config = config
        self.catalogue = catalogue
        self.settings = settings
        self.clock = clock
        self.metrics = OutboxMetrics()
        #: "not started", "running", "stopped" or "crashed: ..." (set by the worker of this process).
        self.worker_state = "not started"
        #: Set when a message is queued in this process: its idle worker looks at once.  A worker in another
        #: process finds it by polling (MAILGATE_OUTBOX_POLL_SECONDS).
        self.wake = asyncio.Event()
        #: Concurrent writes (enqueues, recorded attempts) share transactions.
        self.writes = GroupCommit(db)
        #: The bytes of large new messages held at once (see OutboxSettings.upload_memory_bytes).
        self.intake = ByteBudget(settings.upload_memory_bytes)
        #: account -> (when read (monotonic), its limits)
        self._limits: dict[str, tuple[float, Limits]] = {}
        self._reading_limits = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Outbox({self.db!r}, worker={self.worker_state!r})"

    # -- limits ----------------------------------------------------------------------------------------

    async def limits(self, account: str = DEFAULT_ACCOUNT) -> Limits:
        """What a new message of ``account`` is checked against: its sender, its provider's recipient limit
        (read at most once a second: this is per request; the requests that find it due wait for one read)."""
        async with self._reading_limits:
            cached = self._limits.get(account)
            if cached is None or time.monotonic() - cached[0] >= LIMITS_TTL_SECONDS:
                cached = self._limits[account] = (time.monotonic(), await self._read_limits(account))
            return cached[1]

    async def _read_limits(self, account: str) -> Limits:
        server = await self.config.email_server(account)
        spec = self.catalogue.limits_of((await self.config.oauth_view(account)).provider, server)
        return Limits(
            default_sender=server.sender or server.username,
            max_bytes=self.settings.max_message_bytes,
            max_recipients=spec.max_recipients if spec else 0,
            provider=spec.label if spec else "",
        )

    # -- writing ---------------------------------------------------------------------------------------

    async def enqueue(
        self,
        message: NewMessage,
        *,
        idempotency_key: str | None = None,
        request_hash: str = "",
        account_id: str = DEFAULT_ACCOUNT,
    ) -> tuple[MessageView, bool]:
        """Store ``message`` as queued; ``(view, created)``.  A known key returns the earlier message."""
        if idempotency_key is not None:
            earlier = await self._by_key(idempotency_key, request_hash)
            if earlier is not None:
                return earlier, False
        now = self.clock()
        row_id = new_message_id()
        values: dict[str, Any] = {
            "id": row_id,
            "account_id": account_id,
            "status": Status.QUEUED.value,
            "sender": message.sender,
            "recipients": list(message.recipients),
            "subject": message.subject,
            "message_id": message.message_id,
            "size": len(message.raw),
            "attempts": 0,
            "next_attempt_at": now,
            "deadline_at": now + timedelta(seconds=self.settings.retry_deadline_seconds),
            "last_error": "",
            "last_error_code": "",
            "smtp_reply": "",
            "recipient_results": {},
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
            "created_at": now,
            "updated_at": now,
        }

        try:
            # The row, then its body (which refers to it): both or neither.
            await self.writes.execute_all([(_INSERT, values), (_INSERT_BODY, {"id": row_id, "raw": message.raw})])
        except IntegrityError:
            if idempotency_key is None:
                raise
            # The same key arrived twice at once: the other request won.
            earlier = await self._by_key(idempotency_key, request_hash)
            if earlier is None:
                raise
            return earlier, False
        self.metrics.enqueued += 1
        self.wake.set()
        return MessageView.of(values), True  # not an ORM object: building one took more CPU than the insert

    async def _by_key(self, key: str, request_hash: str) -> MessageView | None:
        async with self.db.session() as session:
            row = (await session.execute(select(Row).where(Row.idempotency_key == key))).scalar_one_or_none()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise ValidationError(
                {"Idempotency-Key": "was already used for a different request"},
                hint="Use a new Idempotency-Key for a new message; repeat a request only unchanged.",
            )
        return MessageView.of(row)

    async def retry(self, message_id: str) -> MessageView:
        """Queue a held, failed or retrying message again, due now, with a new retry deadline."""
        now = self.clock()
        async with self.db.session() as session:
            row = await session.get(Row, message_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"No message {message_id}.")
            if row.status in (Status.SENT.value, Status.SENDING.value):
                raise MessageConflictError(
                    f"Message {message_id} is {row.status}; only queued, retrying, held and failed messages "
                    "can be retried.",
                )
            row.status = Status.QUEUED.value
            row.next_attempt_at = now
            row.deadline_at = now + timedelta(seconds=self.settings.retry_deadline_seconds)
            row.updated_at = now
            # Recipients that failed for good get another chance too.
            results = dict(row.recipient_results or {})
            row.recipient_results = {k: v for k, v in results.items() if v.get("status") == "sent"}
        self.wake.set()
        return MessageView.of(row)

    async def purge(self, statuses: Sequence[str], older_than: timedelta, account: str | None = None) -> int:
        """Delete sent/failed/held messages (of one account, or all) last changed before ``now - older_than``."""
        allowed = {*FINAL, Status.HELD.value}
        refused = [s for s in statuses if s not in allowed]
        if refused or not statuses:
            raise ValidationError({"status": f"must be among {', '.join(sorted(allowed))}"})
        cutoff = self.clock() - older_than
        async with self.db.session() as session:
            # Their bodies go with them (ON DELETE CASCADE: SQLite enforces it on mailgate's connections).
            where = [Row.status.in_(list(statuses)), Row.updated_at <= cutoff]
            if account is not None:
                where.append(Row.account_id == account)
            result = await session.execute(delete(Row).where(*where))
        return int(getattr(result, "rowcount", 0) or 0)

    async def expire_sent(self, account_id: str = DEFAULT_ACCOUNT, *, chunk: int = EXPIRE_CHUNK) -> int:
        """Delete the account's messages sent more than ``keep_sent_days`` ago (rows and bodies); how many.
        A chunk per transaction, so that the other writes are not kept waiting."""
        cutoff = self.clock() - timedelta(days=self.settings.keep_sent_days)
        work = functools.partial(queue.delete_sent_before, account_id=account_id, cutoff=cutoff, limit=chunk)
        total = 0
        while True:
            deleted = await self.writes.transaction(work, sync=False)
            total += deleted
            if deleted < chunk:
                return total

    # -- reading ---------------------------------------------------------------------------------------

    async def get(self, message_id: str) -> MessageView:
        async with self.db.session() as session:
            row = await session.get(Row, message_id)
        if row is None:
            raise NotFoundError(f"No message {message_id}.", hint="Check the id returned when it was queued.")
        return MessageView.of(row)

    async def list(
        self, *, statuses: Sequence[str] = (), limit: int = 50, offset: int = 0, account: str | None = None
    ) -> tuple[list[MessageView], int]:
        """Newest first, of one account or all; ``(page, total matching)``."""
        unknown = [s for s in statuses if s not in {st.value for st in Status}]
        if unknown:
            raise ValidationError({"status": f"unknown status {unknown[0]!r}; one of {', '.join(Status)}"})
        where: list[ColumnElement[bool]] = [Row.status.in_(list(statuses))] if statuses else []
        if account is not None:
            where.append(Row.account_id == account)
        async with self.db.session() as session:
            total = (await session.execute(select(func.count()).select_from(Row).where(*where))).scalar_one()
            rows = (
                await session.execute(
                    select(Row).where(*where).order_by(Row.created_at.desc(), Row.id).limit(limit).offset(offset)
                )
            ).scalars()
            return [MessageView.of(r) for r in rows], int(total)

    async def counts(self) -> dict[str, int]:
        """How many messages have each status."""
        async with self.db.session() as session:
            result = await session.execute(select(Row.status, func.count()).group_by(Row.status))
        return {status.value: 0 for status in Status} | {str(status): int(n) for status, n in result.all()}

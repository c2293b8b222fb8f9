"""The notifier: one notification when a condition starts, one when it is resolved, never one per message.

Each check compares the current problems (a :data:`~mailgate.problems.ProblemSource`) with the conditions
already announced, which are stored: a restart neither repeats a notification nor loses one.  A condition is
opened (or closed) and its notification stored in one transaction, and the primary key of the open conditions
makes two processes announce it once.  Notifications are then delivered in order on each channel: while the
webhook is down the oldest one is retried with exponential backoff and the later ones (its resolution) wait
behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ..config import NotifierSettings
from ..outbox import Outbox
from ..problems import Problem, ProblemSource
from ..store import Database
from ..store.models import AlertConditionRow, AlertNotificationRow
from .channels import Delivery, HealthyAccounts, send_email, send_webhook
from .settings import AlertConfig, AlertSettings

__all__ = ["CHANNELS", "Notification", "Notifier"]

log = logging.getLogger(__name__)

Channel = Literal["webhook", "email"]
CHANNELS: tuple[Channel, ...] = ("webhook", "email")
#: A process attempting a delivery holds it this long (others skip it meanwhile); more than an attempt takes.
CLAIM = timedelta(minutes=3)


@dataclass(frozen=True)
class Notification:
    """A notification as listed on the Alerts page (its payload holds no secret)."""

    id: int
    event: str
    account: str
    code: str
    created_at: datetime
    payload: dict[str, Any]
    states: dict[str, tuple[str, int, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "account": self.account,
            "code": self.code,
            "created_at": self.created_at.isoformat(),
            "payload": self.payload,
            **{ch: {"state": s, "attempts": n, "detail": d} for ch, (s, n, d) in self.states.items()},
        }


def _columns(channel: Channel) -> tuple[Any, Any, Any, Any]:
    table = AlertNotificationRow
    return (
        getattr(table, f"{channel}_state"),
        getattr(table, f"{channel}_attempts"),
        getattr(table, f"{channel}_next_at"),
        getattr(table, f"{channel}_detail"),
    )


class Notifier:
    """Turns changes of the problems into notifications and delivers them.  ``run()`` until :meth:`stop`;
    tests call :meth:`check` with a hand clock."""

    def __init__(
        self,
        db: Database,
        config: AlertConfig,
        source: ProblemSource,
        *,
        outbox: Outbox,
        healthy: HealthyAccounts,
        settings: NotifierSettings,
        link_base: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._db, self._config, self._source = db, config, source
        self._outbox, self._healthy, self.settings = outbox, healthy, settings
        #: What a problem's link (relative to the context path) is appended to: base URL + context path.
        self._link_base = link_base.rstrip("/")
        self._clock = clock
        self._http = http or httpx.AsyncClient(follow_redirects=False)
        self._stopping = asyncio.Event()
        #: Whether the last check failed, and why (shown on the Alerts page).
        self.last_error = ""

    def __repr__(self) -> str:
        return f"Notifier({self._db!r})"

    def replace_source(self, source: ProblemSource) -> None:
        """Use another source of problems (the wiring picks the fullest one available)."""
        self._source = source

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the loop --------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Check every ``poll_seconds`` (sooner when a retry comes due) until :meth:`stop`."""
        self._stopping.clear()
        while not self._stopping.is_set():
            wait = self.settings.poll_seconds
            try:
                await self.check()
                self.last_error = ""
                wait = await self._seconds_to_next()
            except Exception as exc:  # the next check tries again; the process must not lose its notifier
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("alert check failed; trying again in %g seconds", wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)

    def stop(self) -> None:
        self._stopping.set()

    async def _seconds_to_next(self) -> float:
        poll = self.settings.poll_seconds
        async with self._db.session() as session:
            due = [
                (await session.execute(select(func.min(next_at)).where(state == "pending"))).scalar_one_or_none()
                for state, _, next_at, _ in map(_columns, CHANNELS)
            ]
        soonest = min((d for d in due if d is not None), default=None)
        if soonest is None:
            return poll
        return max(0.05, min(poll, float((soonest - self._clock()).total_seconds())))

    async def check(self) -> None:
        """Compare the problems with the open conditions (notifications for the changes), then deliver what is due."""
        await self.reconcile(await self._source())
        await self.deliver_due()

    # -- conditions ------------------------------------------------------------------------------------

    async def reconcile(self, problems: list[Problem]) -> None:
        """Open a condition (and a ``started`` notification) per new problem, close the ones gone (``resolved``)."""
        current = {problem.key: problem for problem in problems}
        async with self._db.session() as session:
            rows = (await session.execute(select(AlertConditionRow))).scalars().all()
        known = {(row.account, row.code): row for row in rows}
        settings = await self._config.get()
        for key, problem in current.items():
            if key not in known:
                await self._open(problem, settings)
        for key, row in known.items():
            if key not in current:
                await self._close(row, settings)

    def _payload(self, event: str, problem: Problem) -> dict[str, Any]:
        return {"event": event, **problem.to_dict(self._link_base), "at": self._clock().isoformat()}

    def _notification(self, payload: dict[str, Any], settings: AlertSettings) -> AlertNotificationRow:
        now = self._clock()
        row = AlertNotificationRow(
            event=payload["event"], account=payload["account"], code=payload["code"], payload=payload, created_at=now
        )
        for channel, wanted in (("webhook", bool(settings.webhook_url)), ("email", bool(settings.email_to))):
            setattr(row, f"{channel}_state", "pending" if wanted else "none")
            setattr(row, f"{channel}_attempts", 0)
            setattr(row, f"{channel}_next_at", now if wanted else None)
            setattr(row, f"{channel}_detail", "")
        return row

    async def _open(self, problem: Problem, settings: AlertSettings) -> None:
        now = self._clock()
        try:
            async with self._db.session() as session:
                session.add(
                    AlertConditionRow(
                        account=problem.account,
                        code=problem.code,
                        severity=problem.severity,
                        message=problem.message,
                        since=problem.since,
                        opened_at=now,
                    )
                )
                await session.flush()  # the key is taken (or IntegrityError) before the notification is added
                session.add(self._notification(self._payload("started", problem), settings))
        except IntegrityError:
            return  # another process opened it meanwhile, and notifies
        log.info("alert: %s on account %s started", problem.code, problem.account or "(service)")

    async def _close(self, row: AlertConditionRow, settings: AlertSettings) -> None:
        # The message of the condition that ended (the event says it ended); nothing left to fix.
        problem = Problem(row.account, row.code, row.message, "", row.since, severity="critical")
        payload = {**self._payload("resolved", problem), "severity": row.severity}
        async with self._db.session() as session:
            gone = await session.execute(
                delete(AlertConditionRow).where(
                    AlertConditionRow.account == row.account, AlertConditionRow.code == row.code
                )
            )
            if getattr(gone, "rowcount", 0) != 1:
                return  # closed by another process
            session.add(self._notification(payload, settings))
        log.info("alert: %s on account %s resolved", row.code, row.account or "(service)")

    # -- delivery --------------------------------------------------------------------------------------

    async def deliver_due(self) -> None:
        """Per channel, the pending notifications in order, until one fails (later ones wait behind it)."""
        settings = await self._config.get()
        for channel in CHANNELS:
            state = _columns(channel)[0]
            async with self._db.session() as session:
                rows = (
                    (
                        await session.execute(
                            select(AlertNotificationRow).where(state == "pending").order_by(AlertNotificationRow.id)
                        )
                    )
                    .scalars()
                    .all()
                )
            for row in rows:
                due = getattr(row, f"{channel}_next_at")
                if due is not None and due > self._clock():
                    break  # the oldest waits for its retry: so do the others (a resolution after its start)
                if not await self._attempt(channel, row, settings):
                    break

    async def _attempt(self, channel: Channel, row: AlertNotificationRow, settings: AlertSettings) -> bool:
        """One delivery attempt of ``row`` on ``channel``, claimed first; whether the channel may go on."""
        state, attempts, next_at, detail = _columns(channel)
        now = self._clock()
        seen = getattr(row, f"{channel}_next_at")
        async with self._db.session() as session:
            claimed = await session.execute(
                update(AlertNotificationRow)
                .where(AlertNotificationRow.id == row.id, state == "pending", next_at == seen)
                .values({next_at: now + CLAIM})
            )
        if getattr(claimed, "rowcount", 0) != 1:
            return False  # another process is on it
        result = await self._send(channel, row.payload, settings)
        tries = getattr(row, f"{channel}_attempts") + 1
        values: dict[Any, Any] = {attempts: tries, detail: result.detail[:2000]}
        if result.ok:
            values.update({state: "sent", next_at: None})
        elif self._clock() - row.created_at >= timedelta(seconds=self.settings.retry_deadline_seconds):
            values.update({state: "failed", next_at: None, detail: f"given up after {tries} attempts: {result.detail}"})
        else:
            delay = min(self.settings.retry_base_seconds * 2 ** (tries - 1), self.settings.retry_max_delay_seconds)
            values[next_at] = self._clock() + timedelta(seconds=delay)
            log.warning(
                "alert %s by %s failed (attempt %d, next in %gs): %s", row.id, channel, tries, delay, result.detail
            )
        async with self._db.session() as session:
            await session.execute(update(AlertNotificationRow).where(AlertNotificationRow.id == row.id).values(values))
        return result.ok or values.get(state) == "failed"

    async def _send(self, channel: Channel, payload: dict[str, Any], settings: AlertSettings) -> Delivery:
        if channel == "webhook":
            if not settings.webhook_url:
                return Delivery(False, "no webhook URL is set any more")
            return await send_webhook(self._http, settings.webhook_url, payload)
        if not settings.email_to:
            return Delivery(False, "no email address is set any more")
        return await send_email(settings, payload, self._outbox, self._healthy)

    # -- the Alerts page -------------------------------------------------------------------------------

    async def send_test(self) -> dict[str, dict[str, str]]:
        """Send a test alert now on every configured channel (no retry); what happened on each."""
        settings = await self._config.get()
        now = self._clock()
        test = Problem("", "test", "This is a test alert from mailgate.", "Nothing to do: alerts reach you.", now)
        payload = self._payload("test", test)
        row = self._notification(payload, settings)
        answer: dict[str, dict[str, str]] = {}
        for channel in CHANNELS:
            if getattr(row, f"{channel}_state") == "none":
                answer[channel] = {"status": "not_configured", "detail": f"no {channel} is set"}
                continue
            result = await self._send(channel, payload, settings)
            answer[channel] = {"status": "sent" if result.ok else "failed", "detail": result.detail}
            setattr(row, f"{channel}_state", answer[channel]["status"])
            setattr(row, f"{channel}_attempts", 1)
            setattr(row, f"{channel}_next_at", None)
            setattr(row, f"{channel}_detail", result.detail[:2000])
        async with self._db.session() as session:
            session.add(row)
        return answer

    async def recent(self, limit: int = 20) -> list[Notification]:
        """The latest notifications, newest first, with their delivery on each channel."""
        async with self._db.session() as session:
            rows = (
                (
                    await session.execute(
                        select(AlertNotificationRow).order_by(AlertNotificationRow.id.desc()).limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        return [
            Notification(
                r.id,
                r.event,
                r.account,
                r.code,
                r.created_at,
                dict(r.payload),
                {
                    ch: (getattr(r, f"{ch}_state"), getattr(r, f"{ch}_attempts"), getattr(r, f"{ch}_detail"))
                    for ch in CHANNELS
                },
            )
            for r in rows
        ]

"""The delivery worker: claims due messages under a lease and sends them over a pool of transports.

One pool per account, of at most the provider's ``max_connections`` transports; the provider's sending
limits are counted in the database, so several workers share them.  After a failure: see :mod:`.policy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from ..mailer import Mailer
from ..transport import Transport, TransportFactory
from ..types import Authentication, EmailServerConfig, ProviderSpec, TokenStatus
from . import queue
from .policy import Outcome, Status, Verdict, classify
from .queue import Claimed
from .record import Recorder, pending_recipients
from .service import Outbox

__all__ = ["Worker"]

log = logging.getLogger(__name__)

#: Messages claimed per connection in a cycle: enough to keep connections busy, few enough to finish well
#: within the lease.
PER_CONNECTION_BATCH = 25
#: The bodies a cycle holds in memory, in bytes (plus one message: the first in line is claimed even when
#: larger); large messages are claimed a few at a time.
BATCH_BYTES = 16 * 1024 * 1024
#: How often a running worker deletes the messages sent longer ago than MAILGATE_OUTBOX_KEEP_SENT_DAYS.
HOUSEKEEPING_SECONDS = 3600.0
#: The first wait after a cycle that sent (doubling up to poll_seconds): other processes' messages wake no one.
QUICK_POLL_SECONDS = 0.02


@dataclass
class _Lane:
    """The state of one account: its connection pool and why its messages are held."""

    account_id: str
    server: EmailServerConfig | None = None
    pool: list[Transport] = field(default_factory=list)
    #: The configuration seen when the account's messages were held; a change releases them.
    held_fingerprint: tuple[Any, ...] | None = None


@dataclass
class _Batch:
    """The messages a cycle claimed, worked through by the account's connections."""

    rows: deque[Claimed]
    hold: Verdict | None = None
    #: When connections cannot be set up: the retry time for the messages nobody tried.
    unreachable: tuple[datetime, Verdict] | None = None


class Worker:
    """Delivers the outbox.  ``run()`` until cancelled/stopped; tests call ``run_once()`` / ``drain()``."""

    def __init__(
        self,
        outbox: Outbox,
        mailer: Mailer,
        *,
        owner: str | None = None,
        transport_factory: TransportFactory | None = None,
        random_source: Callable[[], float] = random.random,
        accounts: tuple[str, ...] = (),
    ) -> None:
        """``accounts``: the accounts to deliver for; none given, every account (followed as they come and go).
        A ``transport_factory`` replaces the account's SMTP transports (tests; other transports)."""
        self.outbox = outbox
        self.mailer = mailer
        self.owner = owner or f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._factory = transport_factory or mailer.transport
        self._recorder = Recorder(outbox, self.owner, random_source)
        self._lanes = {account: _Lane(account) for account in accounts}
        self._stopping = False
        self._every_account = not accounts
        #: When :meth:`housekeeping` is next due (time.monotonic()); at once when the worker starts.
        self._housekeeping_due = 0.0

    def __repr__(self) -> str:
        return f"Worker(owner={self.owner!r}, state={self.outbox.worker_state!r})"

    # -- the loop --------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until :meth:`stop` (or cancellation); when idle, waits for a message queued by this process,
        or ``poll_seconds`` (other processes' messages, retries coming due; sooner after a cycle that sent)."""
        self.outbox.worker_state = "running"
        settings = self.outbox.settings
        idle_wait = settings.poll_seconds
        try:
            while not self._stopping:
                self.outbox.wake.clear()
                try:
                    done = await self.run_once()
                except Exception as exc:  # database down, a bug (not a cancellation): keep the worker alive
                    log.exception("outbox worker cycle failed: %s", type(exc).__name__)
                    done = 0
                if time.monotonic() >= self._housekeeping_due:
                    self._housekeeping_due = time.monotonic() + HOUSEKEEPING_SECONDS
                    await self.housekeeping()
                if done:
                    idle_wait = QUICK_POLL_SECONDS
                elif not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.outbox.wake.wait(), min(idle_wait, settings.poll_seconds))
                    idle_wait *= 2
        except Exception as exc:
            self.outbox.worker_state = f"crashed: {type(exc).__name__}"
            raise
        finally:
            if self.outbox.worker_state == "running":
                self.outbox.worker_state = "stopped"
            await self.close()

    async def housekeeping(self) -> int:
        """Delete the messages sent more than ``keep_sent_days`` ago (every HOUSEKEEPING_SECONDS while the
        worker runs); how many.  A failure is logged and left for the next time."""
        deleted = 0
        for lane in self._lanes.values():
            try:
                deleted += await self.outbox.expire_sent(lane.account_id)
            except Exception as exc:
                log.warning("could not delete the old sent messages of %s: %s", lane.account_id, exc)
        if deleted:
            days = self.outbox.settings.keep_sent_days
            log.info("deleted %d message(s) sent over %g day(s) ago (MAILGATE_OUTBOX_KEEP_SENT_DAYS)", deleted, days)
        return deleted

    def stop(self) -> None:
        """Finish the current cycle, then return from :meth:`run`."""
        self._stopping = True
        self.outbox.wake.set()

    async def drain(self, max_cycles: int = 10_000) -> int:
        """Run cycles until nothing is due; the number of messages attempted (for tests and tools)."""
        total = 0
        for _ in range(max_cycles):
            done = await self.run_once()
            if done == 0:
                break
            total += done
        return total

    async def close(self) -> None:
        """Close every pooled connection; one used again connects anew (as after the server dropped it)."""
        for lane in self._lanes.values():
            await _close_all(lane.pool)

    async def _close_pool(self, lane: _Lane) -> None:
        pool, lane.pool = lane.pool, []
        await _close_all(pool)

    async def run_once(self) -> int:
        """One cycle for every account: release or hold, claim due messages, send them.  Messages attempted."""
        if self._every_account:
            await self._follow_accounts()
        total = 0
        for lane in list(self._lanes.values()):
            total += await self._cycle(lane)
        return total

    async def _follow_accounts(self) -> None:
        """A lane for each account (its own connection pool, limits and hold), none for deleted ones."""
        names = await self.outbox.config.account_names()
        for gone in [name for name in self._lanes if name not in names]:
            await self._close_pool(self._lanes.pop(gone))
        for name in names:
            self._lanes.setdefault(name, _Lane(name))

    # -- one cycle of one account ----------------------------------------------------------------------

    async def _readiness(
        self, account: str
    ) -> tuple[EmailServerConfig, Verdict | None, tuple[Any, ...], ProviderSpec | None]:
        """The account's server, why it cannot send now (or None), a fingerprint of its configuration, and the
        provider whose limits apply."""
        server = await self.outbox.config.email_server(account)
        view = await self.outbox.config.oauth_view(account)
        oauth, status = server.authentication is Authentication.OAUTH, view.token_status
        reason = view.token_status_reason  # why the last refresh failed; saving a client secret clears it: a release
        fingerprint = (server, view.provider, view.client_id, status, view.authorized_at, bool(reason))
        problem: Verdict | None = None
        if not server.host and not server.delivery.over_http:  # Graph and the Gmail API need no SMTP host
            problem = Verdict(Outcome.HOLD, "not_configured", "The Email server is not configured.")
        elif server.authentication is not Authentication.NONE and not server.username:
            text = "The Email server's Username is empty: set it to the mailbox to send from."
            problem = Verdict(Outcome.HOLD, "not_configured", text)
        elif oauth and status is TokenStatus.REAUTHORIZATION_REQUIRED:
            text = f"The mailbox must be authorized again: {reason}".rstrip(": ")
            problem = Verdict(Outcome.HOLD, "reauthorization_required", text)
        elif oauth and status is not TokenStatus.VALID:
            text = "OAuth is not authorized yet: authorize the mailbox on the OAuth page."
            problem = Verdict(Outcome.HOLD, "not_configured", text)
        return server, problem, fingerprint, self.outbox.catalogue.limits_of(view.provider, server)

    async def _cycle(self, lane: _Lane) -> int:
        now = self.outbox.clock()
        server, problem, fingerprint, spec = await self._readiness(lane.account_id)
        async with self.outbox.db.session() as session:
            if problem is not None:
                held = await queue.hold_account(session, lane.account_id, now, problem.code, problem.message)
                if held:
                    log.warning("holding %d message(s) of %s: %s", held, lane.account_id, problem.message)
                    self.outbox.metrics.held += held
                lane.held_fingerprint = fingerprint
                return 0
            if lane.held_fingerprint != fingerprint:
                # The configuration changed since the account's messages were held (or this process does
                # not know when they were): give them another chance.
                if released := await queue.release_held(session, lane.account_id, now):
                    log.info("%s: %d held message(s) queued again", lane.account_id, released)
                lane.held_fingerprint = None
        connections = (spec.max_connections if spec else 0) or self.outbox.settings.default_connections
        rows = await self._claim(lane, connections * PER_CONNECTION_BATCH, spec)
        if not rows:
            return 0
        batch = _Batch(deque(rows))
        if lane.server != server:
            await self._close_pool(lane)
            lane.server = server
        while len(lane.pool) < connections:
            lane.pool.append(self._factory(server, lane.account_id))
        del lane.pool[connections:]
        # Every connection finishes its message before the cycle ends, even when another one failed.
        outcomes: list[object] = list(
            await asyncio.gather(
                *(self._connection_loop(lane, conn, batch) for conn in lane.pool), return_exceptions=True
            )
        )
        # Claimed, untried messages go back to the queue now (not when their lease runs out), even after a
        # failure to record a result: the database may well be back.
        await self._settle_untried(lane, batch, fingerprint)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return len(rows)

    async def _claim(self, lane: _Lane, size: int, spec: ProviderSpec | None) -> list[Claimed]:
        """Claim up to ``size`` due messages of the account, as the sending limits allow, with their bodies."""
        if self._stopping:
            return []
        now = self.outbox.clock()
        lease = timedelta(seconds=self.outbox.settings.lease_seconds)

        def claim(connection: Connection) -> list[Claimed]:
            limit = min(size, _allowance(connection, lane.account_id, now, spec))
            return queue.claim(
                connection, account_id=lane.account_id, owner=self.owner, now=now, lease=lease, limit=limit,
                max_bytes=BATCH_BYTES,
            )  # fmt: skip

        # Not waiting for the disk: a power failure could only undo the claim (see GroupCommit).
        rows = await self.outbox.writes.transaction(claim, sync=False)
        if not rows:
            return rows
        # After the claim's transaction, which holds the outbox's write lock (the API's inserts wait for it).
        # Should this fail, the messages go back to the queue when their lease runs out.
        async with self.outbox.db.engine.connect() as connection:
            return await connection.run_sync(queue.with_bodies, rows)

    async def _settle_untried(self, lane: _Lane, batch: _Batch, fingerprint: tuple[Any, ...]) -> None:
        """Messages left in the batch: held with the account, or back to the queue without an attempt."""
        now = self.outbox.clock()
        untried = [row.id for row in batch.rows]
        async with self.outbox.db.session() as session:
            if batch.hold is not None:
                lane.held_fingerprint = fingerprint
                # Given back, then held with the account's other waiting messages (in the same transaction).
                await queue.requeue(session, untried, self.owner, {"status": Status.QUEUED.value})
                held = await queue.hold_account(session, lane.account_id, now, batch.hold.code, batch.hold.message)
                self.outbox.metrics.held += held
                await self._close_pool(lane)
            elif untried:
                when, verdict = batch.unreachable or (now, Verdict(Outcome.RETRY, "", ""))
                values = {"status": Status.RETRYING.value, "next_attempt_at": when, "updated_at": now}
                if verdict.message:
                    values.update(last_error=verdict.message, last_error_code=verdict.code)
                await queue.requeue(session, untried, self.owner, values)

    # -- one connection working through the batch ------------------------------------------------------

    async def _connection_loop(self, lane: _Lane, conn: Transport, batch: _Batch) -> None:
        # A message's result is committed while the connection sends the next message's envelope, and before
        # that message's content (``ready``): at any moment at most one message per connection has been
        # accepted by the server without its result committed (the bound on duplicates after a crash).
        recording: asyncio.Task[None] | None = None
        try:
            # Stopping (SIGTERM): the messages not tried yet go back to the queue (_settle_untried).
            while batch.hold is None and not self._stopping and batch.rows:
                row = batch.rows.popleft()
                if not conn.is_connected:
                    try:
                        await conn.connect()
                    except Exception as exc:
                        verdict = classify(exc, connecting=True)
                        when = await self._recorder.failure(row, verdict)
                        if verdict.outcome is Outcome.HOLD:
                            batch.hold = verdict
                        elif when is not None:
                            batch.unreachable = (when, verdict)
                        return  # this connection cannot be set up now; others may still work
                try:
                    result = await conn.send(row.sender, pending_recipients(row), row.raw, ready=recording)
                except Exception as exc:
                    if recording is not None and recording.done() and recording.exception() is exc:
                        batch.rows.appendleft(row)  # recording the previous one failed: this one was not sent
                        raise
                    verdict = classify(exc, connecting=False)
                    await self._recorder.failure(row, verdict)
                    if verdict.outcome is Outcome.HOLD:
                        batch.hold = verdict
                    continue
                if recording is not None:
                    await recording  # done already, unless the send ended before its content
                recording = asyncio.create_task(self._recorder.sent(row, result))
        finally:
            if recording is not None:
                await recording


def _allowance(connection: Connection, account_id: str, now: datetime, spec: ProviderSpec | None) -> int:
    """How many more messages the provider's per-minute and per-day limits allow right now."""
    allowance = 1 << 30
    if spec is None:
        return allowance
    for per, window in ((spec.messages_per_minute, 60), (spec.messages_per_day, 86400)):
        if per:
            used = queue.in_window(connection, account_id, now - timedelta(seconds=window), now)
            allowance = min(allowance, max(0, per - used))
    return allowance


async def _close_all(connections: list[Transport]) -> None:
    for conn in connections:
        with contextlib.suppress(Exception):
            await conn.close()

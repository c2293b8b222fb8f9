"""Keep-alive: use each idle account's refresh token well inside the provider's inactivity window.

Microsoft refresh tokens die after 90 days without use, Google's after 6 months (shared/PROVIDERS.md): an
account that sends nothing for that long would need a new consent.  A refresh every ``idle`` (default 7 days,
``MAILGATE_KEEPALIVE_DAYS``) of quiet keeps it alive; a busy account refreshes anyway and is left alone.
A refused refresh is recorded as any refresh failure is (``invalid_grant``: re-authorization required), so
the problem shows in ``/healthz`` and the banner days before mail would have needed the grant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from ..errors import MailgateError
from ..oauth import TokenManager
from ..store import Database
from ..store.models import OAuthAccountRow
from ..types import TokenStatus

__all__ = ["KeepAlive"]

log = logging.getLogger(__name__)


class KeepAlive:
    """Refreshes the grants idle for ``idle`` or longer: :meth:`run_once` now, or every ``interval`` in the
    background between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        db: Database,
        tokens: TokenManager,
        *,
        clock: Callable[[], datetime],
        idle: timedelta = timedelta(days=7),
        interval: timedelta = timedelta(hours=1),
    ) -> None:
        self._db, self._tokens, self._clock = db, tokens, clock
        self.idle, self.interval = idle, interval
        self._task: asyncio.Task[None] | None = None
        #: Keep-alive refreshes made by this process, and the ones refused.
        self.refreshed = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"KeepAlive(idle={self.idle}, running={self._task is not None})"

    async def idle_accounts(self) -> list[str]:
        """Accounts with a live grant not refreshed (nor consented) for ``idle`` or longer."""
        cutoff = self._clock() - self.idle
        row = OAuthAccountRow
        query = select(row.id, row.last_refreshed_at, row.authorized_at).where(
            row.refresh_token_enc != "", row.status == TokenStatus.VALID.value
        )
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
        return sorted(name for name, refreshed, authorized in rows if (refreshed or authorized or cutoff) <= cutoff)

    async def run_once(self) -> list[str]:
        """Refresh every idle account now; the accounts refreshed.  A failure is logged (and recorded on the
        account by the token manager), never raised: the other accounts are still kept alive."""
        done = []
        for name in await self.idle_accounts():
            try:
                await self._tokens.keep_alive(name)
            except MailgateError as exc:
                self.failed += 1
                log.warning("keep-alive refresh of account %s failed: %s", name, exc.message)
                continue
            self.refreshed += 1
            done.append(name)
            log.info("keep-alive: refreshed the idle grant of account %s", name)
        return done

    def start(self) -> None:
        """Run :meth:`run_once` now and then every ``interval``, in the background, until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="grant-keep-alive")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # the database may be away for a while: try again next time
                log.exception("keep-alive round failed")
            await asyncio.sleep(self.interval.total_seconds())

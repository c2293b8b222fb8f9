"""The :class:`~mailgate.problems.ProblemSource` of every account: reads what is stored, applies the rules.

Read-only on every table it looks at (the outbox included).  One read serves every caller for a second
(``/healthz`` probes, the admin pages' banner, the alert notifier): the answer is reused while the clock's
second, the consents, the saved settings and the token statuses of this process have not moved, and
concurrent callers share one read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..outbox.policy import Status
from ..problems import Problem
from ..singleflight import SingleFlight
from ..store import Database
from ..store.models import AccountRow, EmailServerRow, OAuthAccountRow, OAuthConfigRow, OutboxMessageRow
from ..types import Authentication, Grant, TokenStatus
from .rules import DEFAULT_ACCOUNT, AccountFacts, account_problems

__all__ = ["ProblemWatch"]

_WAITING = (Status.RETRYING.value, Status.HELD.value)


class ProblemWatch:
    """``await watch()``: the problems of every account now (a :data:`~mailgate.problems.ProblemSource`).

    ``versions`` returns numbers that change when what is stored changes in this process (saves, consents,
    token statuses): a change, or a new second of ``clock``, makes the next call read again.
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime],
        versions: Callable[[], tuple[Any, ...]] = tuple,
    ) -> None:
        self._db = db
        self._clock = clock
        self._versions = versions
        self._flight: SingleFlight[tuple[Any, ...], list[Problem]] = SingleFlight()
        self._key: tuple[Any, ...] | None = None
        self._answer: list[Problem] = []

    def __repr__(self) -> str:
        return f"ProblemWatch(problems={len(self._answer)})"

    async def __call__(self) -> list[Problem]:
        key = (int(self._clock().timestamp()), *self._versions())
        if key != self._key:
            self._answer = await self._flight.run(key, self._read)
            self._key = key
        return list(self._answer)

    async def _read(self) -> list[Problem]:
        now = self._clock()
        async with self._db.session() as session:
            facts = await read_facts(session)
            problems: list[Problem] = []
            for account in facts:
                failing = await _failing(session, account.name)
                if failing is not None:
                    since, count, error = failing
                    account = replace(account, failing_since=since, failing_messages=count, failing_error=error)
                problems += account_problems(account, now)
        return problems


async def read_facts(session: AsyncSession) -> list[AccountFacts]:
    """What the rules need of every account (``default`` first), without the outbox."""
    names = set((await session.execute(select(AccountRow.name))).scalars()) | {DEFAULT_ACCOUNT}
    configs = {row.account_id: row for row in (await session.execute(select(OAuthConfigRow))).scalars()}
    grants = {row.id: row for row in (await session.execute(select(OAuthAccountRow))).scalars()}
    servers = {
        row.account_id: (row.authentication, row.username)
        for row in (
            await session.execute(
                select(EmailServerRow.account_id, EmailServerRow.authentication, EmailServerRow.username)
            )
        )
    }
    facts = []
    for name in sorted(names, key=lambda n: (n != DEFAULT_ACCOUNT, n)):
        config, grant = configs.get(name), grants.get(name)
        authentication, username = servers.get(name, (Authentication.OAUTH.value, ""))
        app_only = config is not None and Grant(config.grant_type or Grant.AUTHORIZATION_CODE).app_only
        # An app-only identity has no refresh token: its token row is what it has.
        live = grant if grant is not None and (grant.refresh_token_enc or app_only) else None
        facts.append(
            AccountFacts(
                name=name,
                app_only=app_only,
                provider=config.provider if config else "",
                uses_oauth=authentication == Authentication.OAUTH.value,
                username=username,
                configured_at=config.updated_at if config else None,
                refresh_token_set=live is not None,
                consented_mailbox=live.account if live else "",
                status=TokenStatus(live.status) if live else TokenStatus.NOT_AUTHORIZED,
                status_reason=live.status_reason if live else "",
                status_since=live.status_since if live else None,
                authorized_at=live.authorized_at if live else None,
                refresh_token_expires_at=live.refresh_token_expires_at if live else None,
                client_secret_expires_on=config.client_secret_expires_on if config else None,
            )
        )
    return facts


async def _failing(session: AsyncSession, account: str) -> tuple[datetime, int, str] | None:
    """Since when the account's delivery fails with no success since, how many wait, the last error.

    Waiting messages (retrying or held, with an error) that failed after the last success; "since" is the
    later of that success and the oldest of them.  Both queries follow the outbox's indexes (``ix_outbox_sent``,
    ``ix_outbox_due``) and touch only the account's waiting messages.
    """
    row = OutboxMessageRow
    last_ok = (await session.execute(select(func.max(row.sent_at)).where(row.account_id == account))).scalar()
    failed = select(func.min(row.created_at), func.count(), func.max(row.updated_at)).where(
        row.account_id == account, row.status.in_(_WAITING), row.last_error_code != ""
    )
    if last_ok is not None:
        failed = failed.where(row.updated_at > last_ok)
    oldest, count, latest = (await session.execute(failed)).one()
    if not count:
        return None
    error = (
        await session.execute(
            select(row.last_error)
            .where(row.account_id == account, row.status.in_(_WAITING), row.updated_at == latest)
            .limit(1)
        )
    ).scalar() or ""
    since = max(oldest, last_ok) if last_ok is not None else oldest
    return since, int(count), error[:300]

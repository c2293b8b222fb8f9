"""The audit log: who changed what, and when.  Never a secret: changes name the fields, not their values.

The services record (ConfigService, Accounts, ConsentFlow, RelayUsers, Admins, AlertSettings), so that the REST
API, the admin pages and the CLI are all covered by one call each.  *Who* comes from :data:`ACTOR`, which the
edges set: the web layer to the signed-in user or ``API key``, the CLI to ``CLI (user NAME)``.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from .errors import ValidationError
from .store import Database
from .store.models import AuditRow

__all__ = ["ACTOR", "MAX_PAGE", "AuditEntry", "AuditLog", "changed_fields"]

log = logging.getLogger(__name__)

#: Who is acting in the current request or command (set by the edges; ``anonymous`` when nobody said).
ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("mailgate_actor", default="anonymous")
#: The most entries one ``GET /v2/audit`` answers.
MAX_PAGE = 500


def changed_fields(before: Mapping[str, object], after: Mapping[str, object]) -> list[str]:
    """The names of the fields whose values differ (compared here, never stored): what an entry records."""
    return sorted(name for name in after if before.get(name) != after[name])


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    account: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


class AuditLog:
    """Appends entries and pages through them, newest first."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db, self._clock = db, clock

    def __repr__(self) -> str:
        return f"AuditLog({self._db!r})"

    async def record(self, action: str, *, account: str = "", actor: str | None = None, **details: Any) -> None:
        """Append one entry.  ``details``: field names, counts, addresses; never a secret's value."""
        row = AuditRow(
            at=self._clock(),
            actor=(actor or ACTOR.get())[:128],
            action=action[:64],
            account=account[:64],
            details=details,
        )
        async with self._db.session() as session:
            session.add(row)
        log.info("audit: %s %s%s", row.actor, action, f" (account {account})" if account else "")

    async def list(self, *, limit: int = 50, before: int | None = None) -> list[AuditEntry]:
        """Entries newest first: at most ``limit``, with an id below ``before`` when given (the next page)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError({"limit": f"must be between 1 and {MAX_PAGE}"})
        if before is not None and before < 1:
            raise ValidationError({"before": "must be the id of an entry (a positive number)"})
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if before is not None:
            query = query.where(AuditRow.id < before)
        async with self._db.session() as session:
            rows = (await session.execute(query)).scalars().all()
        return [AuditEntry(r.id, r.at, r.actor, r.action, r.account, dict(r.details or {})) for r in rows]

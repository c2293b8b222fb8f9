"""Accounts: the sending mailboxes, each with its OAuth settings, consent, Email server and allowed senders.

``default`` always exists: it is what the guide's OAuth and Email server pages, and every route and command
without an account, edit.  An account is created by saving its OAuth or Email server settings.

The sender policy (:meth:`Accounts.may_send`, :meth:`Accounts.route`) decides which account a message goes
out through: an account may send as its mailbox (the Email server's username, else the mailbox that
consented), its configured sender, and the extra senders it lists (aliases, ``*@domain``).  Providers refuse
any other From (Microsoft: ``550 5.7.60 SendAsDenied``), so such a message is refused before it is queued.
Two cases do not restrict: an account whose server takes no authentication (``none``: the server decides),
and an account whose mailbox is not known yet (nothing configured or consented: its messages are held until
it is).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from sqlalchemy import delete, func, select, update

from .configure import ConfigService, EmailServerUpdate, OAuthConfigUpdate, OAuthView
from .errors import MailgateError, NotFoundError, ValidationError
from .oauth import ConsentFlow
from .singleflight import SingleFlight
from .store import Database
from .store.models import AccountRow, EmailServerRow, OAuthAccountRow, OAuthConfigRow, OAuthStateRow, OutboxMessageRow
from .store.repository import DEFAULT_ACCOUNT
from .types import Authentication, EmailServerConfig

__all__ = [
    "ACCOUNT_NAME",
    "AccountConflictError",
    "AccountSummary",
    "Accounts",
    "DeleteResult",
    "parse_senders",
]

#: What an account may be called (it appears in URLs and on the command line).
ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: Extra senders an account may list.
MAX_SENDERS = 100
#: How long the sender policy read for a message is reused (it is read per request).
POLICY_TTL_SECONDS = 1.0
#: Statuses of the messages an account still has to deliver (a deletion asks before failing them).
PENDING = ("queued", "retrying", "sending", "held")
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+$")


class AccountConflictError(MailgateError):
    """The account cannot be changed as asked (the default account, or one with mail still to send)."""

    http_status = 409
    code = "conflict"


def parse_senders(values: Sequence[str]) -> list[str]:
    """The extra senders of an account, checked and lower-cased: ``alias@example.com`` or ``*@example.com``.

    Raises ValidationError naming ``senders``."""
    if len(values) > MAX_SENDERS:
        raise ValidationError({"senders": f"at most {MAX_SENDERS} senders"})
    senders: list[str] = []
    for value in values:
        text = value.strip().lower()
        address = text[2:] if text.startswith("*@") else text
        if not _ADDRESS.match(text if not text.startswith("*@") else f"x@{address}") or len(text) > 320:
            raise ValidationError(
                {"senders": f"{value!r} is neither an address (alias@example.com) nor a domain (*@example.com)"}
            )
        if text not in senders:
            senders.append(text)
    return senders


def _normal(address: str) -> str:
    """An address as compared: lower-cased (providers treat addresses case-insensitively)."""
    return parseaddr(address)[1].strip().lower()


@dataclass(frozen=True)
class _Policy:
    """Who one account may send as."""

    exact: frozenset[str]
    domains: frozenset[str]
    unrestricted: bool

    def score(self, address: str) -> int | None:
        """2: the mailbox or an alias; 1: a ``*@domain``; 0: an unrestricted account; None: not allowed."""
        if address in self.exact:
            return 2
        if address.rpartition("@")[2] in self.domains:
            return 1
        return 0 if self.unrestricted else None


@dataclass(frozen=True)
class AccountSummary:
    """One line of the Accounts page and of ``GET /v2/accounts``."""

    name: str
    mailbox: str
    provider: str
    token_status: str
    senders: list[str]
    queued: int
    held: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DeleteResult:
    name: str
    revoked_at_provider: bool
    #: Messages failed because the account went away (with ``force``).
    failed_messages: int


@dataclass
class _Cache:
    read_at: float = -1.0
    #: ConfigService.changes and ConsentFlow.changes when read: a save or consent in this process makes it stale.
    changes: tuple[int, int] = (-1, -1)
    policies: dict[str, _Policy] = field(default_factory=dict)
    #: Incremented when this process deletes an account: a read under way before is not shared after.
    deletions: int = 0


class Accounts:
    """List, create (through their settings), delete accounts, and decide which one sends a message."""

    def __init__(
        self,
        db: Database,
        config: ConfigService,
        consent: ConsentFlow,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db, self._config, self._consent, self._clock = db, config, consent, clock
        self._cache = _Cache()
        #: The callers that find the policies due share one read (the SMTP relay asks at every MAIL FROM, 16
        #: sessions at once: each reading them made 16 reads a second, and opened pooled connections beyond
        #: the pool's size).
        self._reading: SingleFlight[tuple[int, int, int], dict[str, _Policy]] = SingleFlight()

    def __repr__(self) -> str:
        return f"Accounts({self._db!r})"

    @staticmethod
    def check_name(name: str, field_name: str = "account") -> str:
        """``name`` when it is a valid account name, else ValidationError naming ``field_name``."""
        if not ACCOUNT_NAME.match(name):
            raise ValidationError(
                {field_name: "must be 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"}
            )
        return name

    # -- reading -----------------------------------------------------------------------------------------

    async def names(self) -> list[str]:
        """Every account's name, ``default`` first, then by name."""
        return await self._config.account_names()

    async def exists(self, name: str) -> bool:
        """Whether an account ``name`` exists (``default`` always does)."""
        return name in await self.names()

    async def require(self, name: str) -> str:
        """``name`` when such an account exists, else NotFoundError (404)."""
        self.check_name(name)
        if name != DEFAULT_ACCOUNT and name not in await self.names():
            raise NotFoundError(
                f"No account {name!r}.",
                hint="GET /v2/accounts lists them; PUT its oauth/config or email/server creates one.",
            )
        return name

    async def senders(self, name: str) -> list[str]:
        """The account's extra senders (besides its mailbox)."""
        async with self._db.session() as session:
            row = await session.get(AccountRow, name)
        return list(row.senders) if row is not None else []

    async def list(self) -> list[AccountSummary]:
        """Every account with its mailbox, provider, token status, extra senders and pending messages."""
        names = await self.names()
        async with self._db.session() as session:
            counts = await session.execute(
                select(OutboxMessageRow.account_id, OutboxMessageRow.status, func.count())
                .where(OutboxMessageRow.status.in_(PENDING))
                .group_by(OutboxMessageRow.account_id, OutboxMessageRow.status)
            )
            pending: dict[tuple[str, str], int] = {(a, s): int(n) for a, s, n in counts.all()}
            senders = {row.name: list(row.senders) for row in (await session.execute(select(AccountRow))).scalars()}
        summaries = []
        for name in names:
            view = await self._config.oauth_view(name)
            server = await self._config.email_server(name)
            summaries.append(
                AccountSummary(
                    name=name,
                    mailbox=server.username or view.account,
                    provider=view.provider,
                    token_status=view.token_status.value,
                    senders=senders.get(name, []),
                    queued=sum(pending.get((name, s), 0) for s in ("queued", "retrying", "sending")),
                    held=pending.get((name, "held"), 0),
                )
            )
        return summaries

    async def get(self, name: str) -> AccountSummary:
        await self.require(name)
        return next(s for s in await self.list() if s.name == name)

    # -- creating and changing ---------------------------------------------------------------------------

    async def save_oauth(self, name: str, update: OAuthConfigUpdate) -> OAuthView:
        """Save the account's OAuth settings (creating the account); ``update.copy_from`` names another."""
        self.check_name(name)
        if update.copy_from is not None:
            self.check_name(update.copy_from, "copy_from")  # whether it has settings to copy: ConfigService
        return await self._config.save_oauth(update, name)

    async def save_email_server(
        self, name: str, update: EmailServerUpdate, senders: Sequence[str] | None = None
    ) -> EmailServerConfig:
        """Save the account's Email server settings and, when given, its extra senders (creating it)."""
        self.check_name(name)
        extra = parse_senders(senders) if senders is not None else None
        return await self._config.save_email_server(update, name, senders=extra)

    async def delete(self, name: str, *, force: bool = False) -> DeleteResult:
        """Revoke the account's refresh token (where the provider supports it), fail its pending messages
        (only with ``force``: otherwise 409 while it has any), then delete its settings."""
        await self.require(name)
        if name == DEFAULT_ACCOUNT:
            raise AccountConflictError(
                "The account 'default' cannot be deleted: the OAuth and Email server pages, and every request "
                "without an account, use it.",
                hint="To stop it sending, disconnect it on the OAuth page (or `mailgate oauth disconnect`).",
            )
        waiting = OutboxMessageRow.account_id == name, OutboxMessageRow.status.in_(PENDING)
        async with self._db.session() as session:
            count = int((await session.execute(select(func.count()).where(*waiting))).scalar_one())
        if count and not force:
            raise AccountConflictError(
                f"The account {name!r} still has {count} message(s) queued, being sent or held.",
                hint="Wait for them to be sent, or delete with ?force=true (the Delete button asks): they are "
                "then marked failed with the reason 'account deleted'.",
            )
        revoked = await self._consent.disconnect(name)
        now = self._clock()
        async with self._db.session() as session:
            result = await session.execute(
                update(OutboxMessageRow)
                .where(*waiting)
                .values(
                    status="failed",
                    last_error=f"account deleted: the account {name!r} was deleted before this message was sent",
                    last_error_code="account_deleted",
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            )
            failed = int(getattr(result, "rowcount", 0) or 0)
            for model, column in (
                (OAuthConfigRow, OAuthConfigRow.account_id),
                (EmailServerRow, EmailServerRow.account_id),
                (OAuthAccountRow, OAuthAccountRow.id),
                (OAuthStateRow, OAuthStateRow.account_id),
                (AccountRow, AccountRow.name),
            ):
                await session.execute(delete(model).where(column == name))
        self._cache.read_at = -1.0
        self._cache.deletions += 1
        return DeleteResult(name=name, revoked_at_provider=revoked, failed_messages=failed)

    # -- the sender policy -------------------------------------------------------------------------------

    async def _policies(self) -> dict[str, _Policy]:
        changes = (self._config.changes, self._consent.changes)
        if time.monotonic() - self._cache.read_at < POLICY_TTL_SECONDS and self._cache.changes == changes:
            return self._cache.policies
        return await self._reading.run((*changes, self._cache.deletions), lambda: self._read_policies(changes))

    async def _read_policies(self, changes: tuple[int, int]) -> dict[str, _Policy]:
        started = time.monotonic()
        async with self._db.session() as session:
            accounts = {row.name: row for row in (await session.execute(select(AccountRow))).scalars()}
            servers = {row.account_id: row for row in (await session.execute(select(EmailServerRow))).scalars()}
            tokens = {row.id: row for row in (await session.execute(select(OAuthAccountRow))).scalars()}
        policies: dict[str, _Policy] = {}
        for name in {*accounts, DEFAULT_ACCOUNT}:
            server, token = servers.get(name), tokens.get(name)
            consented = token.account if token is not None and token.refresh_token_enc else ""
            mailbox = (server.username if server is not None else "") or consented
            own = {_normal(mailbox), _normal(server.sender if server is not None else "")} - {""}
            extra = list(accounts[name].senders) if name in accounts else []
            exact = own | {s for s in extra if not s.startswith("*@")}
            domains = {s[2:] for s in extra if s.startswith("*@")}
            open_server = server is not None and server.authentication == Authentication.NONE.value
            policies[name] = _Policy(frozenset(exact), frozenset(domains), open_server or not (exact or domains))
        self._cache.policies, self._cache.read_at, self._cache.changes = policies, started, changes
        return policies

    async def may_send(self, account: str, address: str) -> bool:
        """Whether ``account`` may send with From ``address`` (compared case-insensitively)."""
        policy = (await self._policies()).get(account)
        return policy is not None and policy.score(_normal(address)) is not None

    async def route(self, from_address: str | None, account: str | None) -> str:
        """The account to send a message through: ``account`` when given (it must exist and may use
        ``from_address``), else the account whose senders include ``from_address`` (a mailbox or alias match
        beats a ``*@domain`` one; ties go to ``default``, then by name); ``default`` when there is no From.

        Raises ValidationError naming ``account`` (unknown) or ``from`` (no account may send as it)."""
        policies = await self._policies()
        if account is not None:
            if not ACCOUNT_NAME.match(account) or account not in policies:
                known = ", ".join(sorted(policies, key=lambda n: (n != DEFAULT_ACCOUNT, n)))
                raise ValidationError({"account": f"unknown account {account!r}; the accounts are: {known}"})
            if from_address and policies[account].score(_normal(from_address)) is None:
                raise ValidationError(
                    {"from": f"account {account!r} may not send as {_normal(from_address) or from_address!r}"},
                    hint=_SENDER_HINT,
                )
            return account
        if not from_address:
            return DEFAULT_ACCOUNT
        address = _normal(from_address)
        ranked = sorted(
            ((score, name) for name, p in policies.items() if (score := p.score(address)) is not None),
            key=lambda item: (-item[0], item[1] != DEFAULT_ACCOUNT, item[1]),
        )
        if not ranked:
            raise ValidationError(
                {"from": f"no account may send as {address or from_address!r}; nothing was stored"}, hint=_SENDER_HINT
            )
        return ranked[0][1]


_SENDER_HINT = (
    "Send from an account's mailbox, or add the address (or *@its-domain) to that account's senders on its "
    'Email server page (PUT /v2/accounts/{name}/email/server with "senders"); the provider must allow it too.'
)

"""Access tokens for the consented account: cached, refreshed early, one refresh at a time, rotation persisted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from ..errors import ConfigurationError, ReauthorizationRequiredError, TokenEndpointError
from ..providers import Catalogue, scopes_for
from ..store import Database, SecretBox
from ..store.models import OAuthAccountRow
from ..store.repository import DEFAULT_ACCOUNT, get_delivery, get_oauth_config, lock_account
from ..types import OAuthConfig, TokenStatus
from .assertions import app_only_body
from .client import TokenClient
from .protocol import app_only_error, refresh_body

__all__ = ["USE_RECORD_INTERVAL", "AccountTokenSource", "TokenManager", "new_app_only_row"]

log = logging.getLogger(__name__)

#: ``last_used_at`` is written at most this often per account and process.
USE_RECORD_INTERVAL = timedelta(hours=1)


def new_app_only_row(account_id: str, config: OAuthConfig) -> OAuthAccountRow:
    """The token row of an app-only account before its first token: not authorized yet, no refresh token."""
    return OAuthAccountRow(
        id=account_id,
        provider=config.provider,
        client_id=config.client_id,
        account=config.mailbox,
        status=TokenStatus.NOT_AUTHORIZED.value,
        status_reason="",
        refresh_count=0,
    )


@dataclass
class _Cached:
    token: str
    expires_at: datetime


class TokenManager:
    """Hands out access tokens for an account.

    - Cached in memory and, encrypted, in the database, so that several processes share one token.
    - Refreshed ``margin`` before expiry (default 5 minutes), never per message.
    - One refresh at a time per account: an asyncio lock in the process, a database row lock across processes.
    - A rotated refresh token (Microsoft sends one with every answer, RFC 6749 s.6) is committed before the
      new access token is used.
    - ``invalid_grant`` marks the account "re-authorization required" with the reason, keeping the refresh
      token record for diagnosis.
    """

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        client: TokenClient,
        catalogue: Catalogue,
        *,
        margin: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._box = box
        self._client = client
        self._catalogue = catalogue
        self._margin = margin
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Token endpoint requests made by this process (refresh grants), for metrics and tests.
        self.refresh_requests = 0
        #: Status changes recorded by this process (readers that cache the problems compare it).
        self.status_changes = 0
        #: When this process last wrote each account's ``last_used_at``.
        self._use_written: dict[str, datetime] = {}

    def __repr__(self) -> str:
        return f"TokenManager(accounts={sorted(self._cache)})"

    def source(self, account_id: str = DEFAULT_ACCOUNT) -> AccountTokenSource:
        """An object with ``access_token(force_refresh=...)``, what the SMTP transport asks tokens from."""
        return AccountTokenSource(self, account_id)

    def forget(self, account_id: str = DEFAULT_ACCOUNT) -> None:
        """Drop the cached token (after re-authorization or a configuration change)."""
        self._cache.pop(account_id, None)

    async def note_use(self, account_id: str) -> None:
        """Record that an access token of the account was handed out for a send (``last_used_at``).

        Written at most once per :data:`USE_RECORD_INTERVAL` per process: the inactivity windows it serves are
        counted in days, and a send must not cost a database write.
        """
        now = self._clock()
        written = self._use_written.get(account_id)
        if written is not None and now - written < USE_RECORD_INTERVAL:
            return
        self._use_written[account_id] = now
        async with self._db.session() as session:
            await session.execute(
                update(OAuthAccountRow).where(OAuthAccountRow.id == account_id).values(last_used_at=now)
            )

    async def keep_alive(self, account_id: str) -> None:
        """Use the refresh token now (a refresh grant), so that an idle grant does not reach the provider's
        inactivity limit; a failure is recorded as for any refresh (``invalid_grant``: re-authorization)."""
        await self.access_token(account_id, force_refresh=True)

    def _fresh(self, cached: _Cached | None) -> bool:
        return cached is not None and cached.expires_at - self._margin > self._clock()

    async def access_token(self, account_id: str = DEFAULT_ACCOUNT, *, force_refresh: bool = False) -> str:
        """A valid access token.  ``force_refresh`` after a server rejected the current one."""
        rejected = self._cache.get(account_id) if force_refresh else None
        cached = self._cache.get(account_id)
        if not force_refresh and cached is not None and self._fresh(cached):
            return cached.token
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            cached = self._cache.get(account_id)
            if self._fresh(cached) and cached is not rejected:
                assert cached is not None
                return cached.token  # another task refreshed while we waited
            return await self._refresh(account_id, rejected.token if rejected else None)

    async def _refresh(self, account_id: str, rejected_token: str | None) -> str:
        async with self._db.session() as session:
            row = await lock_account(session, account_id)
            config = await get_oauth_config(session, self._box, account_id)
            app_only = config is not None and config.grant.app_only
            if app_only and row is None:
                assert config is not None
                row = new_app_only_row(account_id, config)
                session.add(row)
            elif row is None or (not row.refresh_token_enc and not app_only):
                raise ConfigurationError(
                    "OAuth is not authorized yet: there is no refresh token.",
                    hint="Open the OAuth page (or run `mailgate oauth authorize`) and authorize the mailbox.",
                )
            if row.status == TokenStatus.REAUTHORIZATION_REQUIRED and not app_only:
                raise ReauthorizationRequiredError(
                    f"The mailbox must be authorized again: {row.status_reason}",
                    hint="Open the OAuth page and click Authorize (or run `mailgate oauth authorize`).",
                )
            stored = self._from_row(row)
            if stored is not None and self._fresh(stored) and stored.token != rejected_token:
                # Another process refreshed while we waited for the lock.
                self._cache[account_id] = stored
                return stored.token
            if config is None:
                raise ConfigurationError("OAuth is not configured.", hint="Fill in and save the OAuth page.")
            provider = self._catalogue.get(config.provider)
            token_url = provider.token_url_for(config.tenant)
            scopes = scopes_for(provider, config.grant, await get_delivery(session, account_id))
            if app_only:
                # No consent and no refresh token: the grant itself gets each access token (RFC 6749 s.4.4,
                # RFC 7523 s.2.1).
                try:
                    body = app_only_body(config, token_url, scopes, now=self._clock())
                except ValueError as exc:
                    raise ConfigurationError(
                        f"The app-only credentials of account {account_id!r} cannot be used: {exc}.",
                        hint="Upload them again on the OAuth page.",
                    ) from exc
            else:
                body = refresh_body(config, provider, self._box.decrypt(row.refresh_token_enc), scopes)
            self.refresh_requests += 1
            failure: TokenEndpointError | None = None
            try:
                answer = await self._client.request_token(token_url, body)
            except TokenEndpointError as exc:
                if not app_only and isinstance(exc, ReauthorizationRequiredError):
                    # Keep the refresh token record for diagnosis; stop using it.
                    row.status = TokenStatus.REAUTHORIZATION_REQUIRED.value
                    row.status_since = self._clock()
                    self.status_changes += 1
                    row.status_reason = str(exc)  # the provider's words, the likely cause and the fix
                    row.access_token_enc = ""
                    row.access_token_expires_at = None
                    self._cache.pop(account_id, None)
                    log.warning("account %s needs re-authorization: %s", account_id, exc.message)
                    failure = exc
                else:
                    failure = app_only_error(exc, config, scopes) if app_only else exc
                    if not row.status_reason:
                        row.status_since = self._clock()  # a new failure (not its repetition)
                        self.status_changes += 1
                    row.status_reason = str(failure)
            else:
                if answer.refresh_token and not app_only:
                    row.refresh_token_enc = self._box.encrypt(answer.refresh_token)
                    row.refresh_token_issued_at = self._clock()
                if answer.refresh_token_expires_at is not None or answer.refresh_token:
                    # A fixed end, said again with every answer (Google), or a new token without one.
                    row.refresh_token_expires_at = answer.refresh_token_expires_at
                row.access_token_enc = self._box.encrypt(answer.access_token)
                row.access_token_expires_at = answer.expires_at
                if row.status != TokenStatus.VALID.value or row.status_reason:
                    row.status_since = self._clock()
                    self.status_changes += 1
                row.status = TokenStatus.VALID.value
                row.status_reason = ""
                row.last_refreshed_at = self._clock()
                row.refresh_count = (row.refresh_count or 0) + 1
                if app_only:
                    row.account = config.mailbox
                    row.authorized_at = row.authorized_at or row.last_refreshed_at
        if failure is not None:
            raise failure  # after the commit that recorded it
        # Committed (rotated refresh token included) before the new access token is handed out.
        fresh = _Cached(answer.access_token, answer.expires_at)
        self._cache[account_id] = fresh
        log.info("refreshed the access token of account %s (expires %s)", account_id, answer.expires_at)
        return fresh.token

    def _from_row(self, row: OAuthAccountRow) -> _Cached | None:
        if not row.access_token_enc or row.access_token_expires_at is None:
            return None
        return _Cached(self._box.decrypt(row.access_token_enc), row.access_token_expires_at)


@dataclass(frozen=True)
class AccountTokenSource:
    """Binds a TokenManager to one account (the SMTP layer's TokenSource protocol)."""

    manager: TokenManager
    account_id: str

    async def access_token(self, *, force_refresh: bool = False) -> str:
        """A token for a send: handed out by the manager, and the account's use recorded."""
        token = await self.manager.access_token(self.account_id, force_refresh=force_refresh)
        await self.manager.note_use(self.account_id)
        return token

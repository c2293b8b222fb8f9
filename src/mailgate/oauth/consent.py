"""The authorization code flow: start (state + PKCE, bound to the browser) and the redirect callback."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from .. import advice
from ..audit import AuditLog
from ..errors import ConfigurationError, MailgateError, OAuthFlowError, TokenEndpointError
from ..providers import Catalogue, scopes_for
from ..server_settings import server_defaults
from ..store import Database, SecretBox
from ..store.models import OAuthAccountRow, OAuthStateRow
from ..store.repository import (
    DEFAULT_ACCOUNT,
    get_account,
    get_delivery,
    get_email_server,
    get_oauth_config,
    save_email_server,
)
from ..types import OAuthConfig, TokenResponse, TokenStatus
from .client import TokenClient
from .manager import TokenManager
from .pkce import new_code_verifier, new_state, sha256_hex
from .protocol import account_from_id_token, authorization_url, code_exchange_body

__all__ = ["AuthorizationResult", "AuthorizationStart", "ConsentFlow"]

log = logging.getLogger(__name__)
_RESTART = "Start again from the OAuth page (Authorize), in the same browser."


@dataclass(frozen=True)
class AuthorizationStart:
    url: str
    #: Value of the cookie that binds the flow to this browser (or CLI session).
    binding: str


@dataclass(frozen=True)
class AuthorizationResult:
    #: The mailbox that consented (from the ID token; "" when the provider did not say).
    account: str
    provider: str
    return_to: str
    #: The mailgate account the refresh token was stored on.
    account_name: str = DEFAULT_ACCOUNT


class ConsentFlow:
    """Runs the OAuth 2.0 authorization code grant with PKCE (RFC 6749 s.4.1, RFC 7636, RFC 9700 s.4.7)."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        client: TokenClient,
        catalogue: Catalogue,
        tokens: TokenManager,
        *,
        state_ttl: timedelta = timedelta(minutes=15),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        audit: AuditLog | None = None,
    ) -> None:
        self._db, self._box, self._client, self._catalogue, self._tokens = db, box, client, catalogue, tokens
        self._ttl = state_ttl
        self._clock = clock
        #: Consents stored and disconnections made through this object (readers that cache them compare it).
        self.changes = 0
        #: Authorizations (succeeded or failed) and disconnections are recorded there.
        self._audit = audit

    async def start(
        self,
        *,
        binding: str | None = None,
        return_to: str = "",
        login_hint: str = "",
        account_name: str = DEFAULT_ACCOUNT,
    ) -> AuthorizationStart:
        """A new authorization request for ``account_name``: remembers state, PKCE verifier, the account and
        which provider/client it is for (every account shares the one redirect URI: the state says which)."""
        binding = binding or secrets.token_urlsafe(32)
        state, verifier = new_state(), new_code_verifier()
        async with self._db.session() as session:
            config = _complete_config(await get_oauth_config(session, self._box, account_name))
            if config.grant.app_only:
                raise ConfigurationError(
                    f"Account {account_name!r} uses an app-only grant ({config.grant.value}): no one consents.",
                    hint="mailgate gets tokens by the grant itself: use Test connection (or `mailgate email test`).",
                )
            provider = self._catalogue.get(config.provider)
            scopes = scopes_for(provider, "authorization_code", await get_delivery(session, account_name))
            session.add(
                OAuthStateRow(
                    state_hash=sha256_hex(state),
                    account_id=account_name,
                    binding_hash=sha256_hex(binding),
                    code_verifier_enc=self._box.encrypt(verifier),
                    provider=config.provider,
                    tenant=config.tenant,
                    client_id=config.client_id,
                    redirect_uri=config.redirect_uri,
                    return_to=return_to,
                    created_at=self._clock(),
                )
            )
        url = authorization_url(
            provider, config, state=state, code_verifier=verifier, login_hint=login_hint, scopes=scopes
        )
        return AuthorizationStart(url=url, binding=binding)

    async def complete(self, *, binding: str | None, params: Mapping[str, str]) -> AuthorizationResult:
        """Handle the redirect: check state, exchange the code, store the refresh token.  Nothing is stored
        on any failure; the state is spent either way (one-time).  The outcome goes into the audit log."""
        try:
            result = await self._complete(binding, params)
        except MailgateError as exc:
            # Only answers to a request mailgate made: anyone may call the redirect URI with made-up states.
            account = await self._account_of(params.get("state", "")) if self._audit is not None else ""
            if self._audit is not None and account:
                error = getattr(exc, "provider_error", "") or exc.code
                await self._audit.record("authorization.failed", account=account, reason=exc.message, error=error)
            raise
        if self._audit is not None:
            await self._audit.record("authorization.succeeded", account=result.account_name, mailbox=result.account)
        return result

    async def _account_of(self, state: str) -> str:
        """The account the authorization started with ``state`` is for ("" when unknown)."""
        row = await self._request_of(state)
        return row.account_id if row is not None else ""

    async def _request_of(self, state: str) -> OAuthStateRow | None:
        """The authorization request made with ``state``, spent or not (None when unknown)."""
        if not state:
            return None
        async with self._db.session() as session:
            return await session.get(OAuthStateRow, sha256_hex(state))

    async def _complete(self, binding: str | None, params: Mapping[str, str]) -> AuthorizationResult:
        pending = await self._spend_state(binding, params.get("state", ""))
        if params.get("error"):
            description = params.get("error_description", "").strip()
            found = advice.authorization_error(params["error"], description, redirect_uri=pending.redirect_uri)
            raise OAuthFlowError(
                f"The provider did not authorize mailgate: {params['error']}"
                + (f" ({description})" if description else ""),
                cause=found.cause,
                hint=found.fix,
                provider_error=params["error"],
                provider_text=description,
            )
        code = params.get("code", "")
        if not code:
            raise OAuthFlowError("The provider's answer has no authorization code.", hint=_RESTART)
        name = pending.account_id
        async with self._db.session() as session:
            config = _complete_config(await get_oauth_config(session, self._box, name))
        if (config.provider, config.client_id, config.tenant) != (
            pending.provider,
            pending.client_id,
            pending.tenant,
        ):
            # Mix-up defence (RFC 9700 s.4.4): the answer must come from the provider the request went to.
            raise OAuthFlowError(
                "The OAuth configuration changed while the authorization was in progress.", hint=_RESTART
            )
        provider = self._catalogue.get(config.provider)
        body = code_exchange_body(
            config,
            code=code,
            code_verifier=self._box.decrypt(pending.code_verifier_enc),
            redirect_uri=pending.redirect_uri,
        )
        try:
            answer = await self._client.request_token(provider.token_url_for(config.tenant), body)
        except TokenEndpointError as exc:
            # Asked again with the redirect URI of this flow: a mismatch names the exact URI to register.
            found = advice.token_error(exc.error, exc.provider_text, redirect_uri=pending.redirect_uri)
            raise OAuthFlowError(
                f"Exchanging the authorization code failed: {exc.message}",
                cause=found.cause,
                hint=found.fix,
                provider_error=exc.error_code or exc.error,
                provider_text=exc.provider_text,
            ) from exc
        if not answer.refresh_token:
            raise OAuthFlowError(
                "The provider returned no refresh token, so mailgate could not keep sending.",
                hint="For Microsoft, the offline_access permission must be allowed; for Google, remove mailgate's "
                "access at myaccount.google.com/permissions and authorize again.",
            )
        account = account_from_id_token(answer.id_token)
        await self._store(name, config, answer, account)
        self.changes += 1
        self._tokens.forget(name)
        log.info(
            "authorization of account %s completed for provider %s, mailbox %s",
            name,
            config.provider,
            account or "(unknown)",
        )
        return AuthorizationResult(
            account=account, provider=config.provider, return_to=pending.return_to, account_name=name
        )

    async def return_to(self, state: str) -> str:
        """Where the flow started with ``state`` asked to come back to ("" when unknown), also after it failed."""
        row = await self._request_of(state)
        return row.return_to if row is not None else ""

    async def disconnect(self, account_name: str = DEFAULT_ACCOUNT) -> bool:
        """Revoke the account's refresh token at the provider when it supports RFC 7009, then delete it here.

        Returns whether the provider confirmed the revocation; the local token is deleted either way.
        """
        async with self._db.session() as session:
            row = await get_account(session, account_name)
            if row is None:
                return False
            refresh_token = self._box.decrypt(row.refresh_token_enc)
            spec = self._catalogue.providers.get(row.provider)
        revoked = False
        if refresh_token and spec is not None and spec.revocation_url:
            revoked = await self._client.revoke(spec.revocation_url, refresh_token)
        async with self._db.session() as session:
            row = await get_account(session, account_name)
            if row is not None:
                await session.delete(row)
        self._tokens.forget(account_name)
        self.changes += 1
        log.info("disconnected account %s (revoked at provider: %s)", account_name, revoked)
        if self._audit is not None:
            await self._audit.record("authorization.disconnected", account=account_name, revoked=revoked)
        return revoked

    async def _spend_state(self, binding: str | None, state: str) -> OAuthStateRow:
        if not state:
            raise OAuthFlowError("The provider's answer has no state parameter.", hint=_RESTART)
        async with self._db.session() as session:
            row = await session.get(OAuthStateRow, sha256_hex(state), with_for_update=True)
            if row is None:
                raise OAuthFlowError(
                    "This authorization answer does not match any request mailgate made.", hint=_RESTART
                )
            if row.used_at is not None:
                raise OAuthFlowError(
                    "This authorization answer was already used (the page was reloaded?).", hint=_RESTART
                )
            if binding is None or sha256_hex(binding) != row.binding_hash:
                # Not spent: the browser that started the flow (or `mailgate oauth authorize`) may still use it.
                raise OAuthFlowError(
                    "This authorization was started in another browser or session.",
                    hint="If you started it with `mailgate oauth authorize`, paste this page's full URL (from the "
                    "address bar) into that terminal. Otherwise " + _RESTART[0].lower() + _RESTART[1:],
                )
            row.used_at = self._clock()
            expired = self._clock() - row.created_at > self._ttl
        if expired:
            raise OAuthFlowError("This authorization request has expired.", hint=_RESTART)
        return row

    async def _store(self, name: str, config: OAuthConfig, answer: TokenResponse, account: str) -> None:
        now = self._clock()
        provider = self._catalogue.get(config.provider)
        async with self._db.session() as session:
            row = await get_account(session, name)
            if row is None:
                row = OAuthAccountRow(id=name, refresh_count=0)
                session.add(row)
            row.provider, row.client_id, row.account = config.provider, config.client_id, account
            row.refresh_token_enc = self._box.encrypt(answer.refresh_token)
            row.access_token_enc = self._box.encrypt(answer.access_token)
            row.access_token_expires_at = answer.expires_at
            row.status, row.status_reason, row.status_since = TokenStatus.VALID.value, "", now
            row.authorized_at = row.last_refreshed_at = row.refresh_token_issued_at = now
            row.refresh_token_expires_at = answer.refresh_token_expires_at
            server = await get_email_server(session, self._box, name)
            if server is None:
                server = server_defaults(provider)
            # The consenting account is the mailbox: fill what the administrator left empty.
            if account and (not server.username or not server.sender):
                server = replace(server, username=server.username or account, sender=server.sender or account)
            await save_email_server(session, self._box, server, name)


def _complete_config(config: OAuthConfig | None) -> OAuthConfig:
    if config is None or not config.client_id:
        raise ConfigurationError(
            "OAuth is not configured.",
            hint="Fill in the OAuth page (provider, client ID, client secret) and save.",
        )
    return config

"""The OAuth page and the Email server page as a service: validated reads and writes.

Validation happens in full before anything is written: a refused save changes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .audit import AuditLog, changed_fields
from .errors import ValidationError
from .oauth.identities import AppOnlyFields, check_grant, identity_info
from .oauth.manager import new_app_only_row
from .providers import Catalogue, is_loopback_host, scopes_for, validate_tenant
from .server_settings import EmailServerUpdate, check_ca_file, merged, server_defaults, validate_server
from .store import Database, SecretBox
from .store.models import AccountRow, OAuthAccountRow
from .store.repository import (
    DEFAULT_ACCOUNT,
    ensure_account,
    get_account,
    get_email_server,
    get_oauth_config,
    save_email_server,
    save_oauth_config,
)
from .types import Delivery, EmailServerConfig, Grant, OAuthConfig, ProviderSpec, TokenStatus

__all__ = ["ConfigService", "EmailServerUpdate", "OAuthConfigUpdate", "OAuthView", "validate_server"]

_MAX = {"client_id": 255, "client_secret": 2048, "tenant": 255, "redirect_uri": 2048}


@dataclass(frozen=True)
class OAuthConfigUpdate:
    """A save of the OAuth page, whole (the page) or partial (``PUT /v2/oauth/config``).

    A field left ``None`` keeps its stored value; ``""`` clears it (``redirect_uri`` then takes the default).
    The client ID and secret are kept only while the provider stays the same: they belong to one app
    registration.  ``client_secret`` is write-only: ``None`` or ``""`` keeps the stored one.
    ``authorization_url`` and ``token_url`` are read-only, accepted only when equal to the derived value.
    """

    provider: str | None = None
    client_id: str | None = None
    tenant: str | None = None
    client_secret: str | None = None
    redirect_uri: str | None = None
    authorization_url: str | None = None
    token_url: str | None = None
    #: The grant (``authorization_code``, ``client_credentials``, ``service_account``) and, for app-only
    #: grants, the mailbox sent as and the credentials (write-only: ``None`` or ``""`` keeps the stored one).
    grant: str | None = None
    mailbox: str | None = None
    certificate_pem: str | None = field(default=None, repr=False)
    private_key_pem: str | None = field(default=None, repr=False)
    service_account_key: str | None = field(default=None, repr=False)
    #: Another account whose client settings (provider, tenant, client ID and secret, redirect URI) are the
    #: base of this update: one app registration serving several mailboxes.
    copy_from: str | None = None
    #: The client secret's expiry date, ISO ``YYYY-MM-DD``; ``""`` clears it.  Left ``None`` it is kept with
    #: the secret it belongs to: a new secret (or provider) without a date of its own clears it.
    client_secret_expires_on: str | None = None


@dataclass(frozen=True)
class OAuthView:
    """What the OAuth page shows: no secret, only whether each is set."""

    provider: str
    tenant: str
    authorization_url: str
    token_url: str
    client_id: str
    client_secret_set: bool
    redirect_uri: str
    refresh_token_set: bool
    account: str
    token_status: TokenStatus
    token_status_reason: str
    authorized_at: datetime | None
    last_refreshed_at: datetime | None
    access_token_expires_at: datetime | None
    client_secret_expires_on: date | None = None
    #: When the stored refresh token was issued (consent or rotation), last used for a send, and when it ends
    #: whatever its use (Google Testing grants; None: no fixed end).
    refresh_token_issued_at: datetime | None = None
    last_used_at: datetime | None = None
    refresh_token_expires_at: datetime | None = None
    grant: str = "authorization_code"
    #: App-only: the mailbox sent as; the certificate's and the service account key's public facts.
    mailbox: str = ""
    certificate_set: bool = False
    certificate_thumbprint: str = ""
    certificate_expires_at: datetime | None = None
    service_account_email: str = ""
    service_account_key_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.__dict__.items()}


class ConfigService:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        catalogue: Catalogue,
        default_redirect_uri: str,
        *,
        audit: AuditLog | None = None,
        forget_tokens: Callable[[str], None] = lambda account: None,
    ) -> None:
        """``forget_tokens(account)`` drops the account's cached access token (its scope no longer fits)."""
        self._db, self._box, self._catalogue = db, box, catalogue
        #: Saves are recorded there (the names of the fields changed, never a value of a secret).
        self._audit = audit
        self.default_redirect_uri = default_redirect_uri
        self._forget_tokens = forget_tokens
        #: Saves made through this object (readers that cache settings compare it).
        self.changes = 0

    async def account_names(self) -> list[str]:
        """Every account's name: ``default`` first, then by name."""
        async with self._db.session() as session:
            names = set((await session.execute(select(AccountRow.name))).scalars())
        return sorted(names | {DEFAULT_ACCOUNT}, key=lambda n: (n != DEFAULT_ACCOUNT, n))

    # -- OAuth page -------------------------------------------------------------------------------------
    async def oauth_view(self, account: str = DEFAULT_ACCOUNT) -> OAuthView:
        """The OAuth page of ``account``."""
        async with self._db.session() as session:
            config = await get_oauth_config(session, self._box, account)
            tokens = await get_account(session, account)
        return self._view(config, tokens)

    def _view(self, config: OAuthConfig | None, account: OAuthAccountRow | None) -> OAuthView:
        spec = self._catalogue.providers.get(config.provider) if config else None
        tenant = config.tenant if config else ""
        app_only = config is not None and config.grant.app_only
        # An account row without a refresh token (never authorized, or disconnected) shows as nothing;
        # an app-only account has none: its row shows whether a token was obtained.
        live = account if account is not None and (account.refresh_token_enc or app_only) else None
        info = identity_info(config)
        return OAuthView(
            provider=config.provider if config else "",
            tenant=tenant,
            authorization_url=spec.authorization_url_for(tenant) if spec else "",
            token_url=spec.token_url_for(tenant) if spec else "",
            client_id=config.client_id if config else "",
            client_secret_set=bool(config and config.client_secret),
            redirect_uri=config.redirect_uri if config else self.default_redirect_uri,
            refresh_token_set=live is not None and bool(live.refresh_token_enc),
            account=(config.mailbox if config and app_only else live.account if live else ""),
            token_status=TokenStatus(live.status) if live else TokenStatus.NOT_AUTHORIZED,
            token_status_reason=live.status_reason if live else "",
            authorized_at=live.authorized_at if live else None,
            last_refreshed_at=live.last_refreshed_at if live else None,
            access_token_expires_at=live.access_token_expires_at if live else None,
            client_secret_expires_on=config.client_secret_expires_on if config else None,
            refresh_token_issued_at=live.refresh_token_issued_at if live else None,
            last_used_at=live.last_used_at if live else None,
            refresh_token_expires_at=live.refresh_token_expires_at if live else None,
            grant=config.grant.value if config else Grant.AUTHORIZATION_CODE.value,
            mailbox=config.mailbox if config else "",
            **info.__dict__,
        )

    async def save_oauth(self, update: OAuthConfigUpdate, account_name: str = DEFAULT_ACCOUNT) -> OAuthView:
        """Merge ``update`` into the account's OAuth settings (creating the account), validated whole first."""
        async with self._db.session() as session:
            current = await get_oauth_config(session, self._box, account_name)
            if update.copy_from is not None:
                update = await self._copied(session, update, update.copy_from)
            config, spec = self._validate_oauth(update, current)
            await save_oauth_config(session, self._box, config, account_name)
            self.changes += 1
            account = await get_account(session, account_name)
            identity = _identity(config)
            if account is not None and (current is None or _identity(current) != identity):
                # A refresh token belongs to the client (and tenant) that obtained it; an app-only token to
                # the grant and the mailbox it was issued for.
                await session.delete(account)
                await session.flush()
                account = None
            if account is None and config.grant.app_only:
                account = new_app_only_row(account_name, config)
                session.add(account)
            elif account is not None and update.client_secret:
                # A secret entered is the fix of a refused one (expired, AADSTS7000222): the last refresh failure no
                # longer stands, and the worker, which keys its hold on it, gives held mail another try.
                account.status_reason = ""
                self._forget_tokens(account_name)
            server = await get_email_server(session, self._box, account_name)
            if server is None or (config.mailbox and not (server.username and server.sender)):
                # Choosing a provider pre-fills the Email server page; an app-only mailbox is its username.
                server = server or server_defaults(spec)
                server = replace(
                    server, username=server.username or config.mailbox, sender=server.sender or config.mailbox
                )
                await save_email_server(session, self._box, server, account_name)
        before = dataclasses.asdict(current) if current is not None else {}
        await self._record("oauth_config.changed", account_name, changed_fields(before, dataclasses.asdict(config)))
        return self._view(config, account)

    async def _record(self, action: str, account: str, fields: list[str]) -> None:
        if self._audit is not None and fields:
            await self._audit.record(action, account=account, fields=fields)

    async def _copied(self, session: AsyncSession, update: OAuthConfigUpdate, source: str) -> OAuthConfigUpdate:
        """``update`` on top of the client settings of account ``source`` (the fields sent win)."""
        config = await get_oauth_config(session, self._box, source) if source else None
        if config is None:
            raise ValidationError({"copy_from": f"account {source!r} has no OAuth settings to copy"})
        return OAuthConfigUpdate(
            provider=config.provider if update.provider is None else update.provider,
            tenant=config.tenant if update.tenant is None else update.tenant,
            client_id=config.client_id if update.client_id is None else update.client_id,
            client_secret=update.client_secret or config.client_secret,
            redirect_uri=config.redirect_uri if update.redirect_uri is None else update.redirect_uri,
            authorization_url=update.authorization_url,
            token_url=update.token_url,
            client_secret_expires_on=_copied_expiry(update, config),
            # One app registration (or service account) for several mailboxes: the mailbox is not copied.
            grant=config.grant.value if update.grant is None else update.grant,
            mailbox=update.mailbox,
            certificate_pem=update.certificate_pem or config.certificate_pem,
            private_key_pem=update.private_key_pem or config.private_key_pem,
            service_account_key=update.service_account_key or config.service_account_key,
        )

    def _validate_oauth(
        self, update: OAuthConfigUpdate, current: OAuthConfig | None
    ) -> tuple[OAuthConfig, ProviderSpec]:
        errors: dict[str, str] = {}
        provider = merged(update.provider, current.provider if current else "")
        spec = self._catalogue.providers.get(provider)
        if spec is None:
            choose = f"choose one of {', '.join(self._catalogue.names())}"
            errors["provider"] = f"unknown provider {provider!r}; {choose}" if provider else f"is required: {choose}"
        # The client ID and secret belong to the app registered with the stored provider: not carried over.
        same_client = current is not None and current.provider == provider
        kept = current if current is not None and same_client else None
        values = {
            "client_id": merged(update.client_id, kept.client_id if kept else ""),
            "tenant": merged(update.tenant, current.tenant if current else ""),
            "redirect_uri": merged(update.redirect_uri, current.redirect_uri if current else "")
            or self.default_redirect_uri,
            "client_secret": update.client_secret or (kept.client_secret if kept else ""),
        }
        grant_fields = AppOnlyFields(
            grant=merged(update.grant, current.grant.value if current else ""),
            mailbox=merged(update.mailbox, current.mailbox if current else ""),
            certificate_pem=(update.certificate_pem or "").strip(),
            private_key_pem=(update.private_key_pem or "").strip(),
            service_account_key=(update.service_account_key or "").strip(),
            client_secret_sent=bool(update.client_secret),
        )
        grant, app_values = check_grant(spec, grant_fields, kept, values["tenant"], errors) if spec else (None, {})
        values.update(app_values)
        for name, limit in _MAX.items():
            if len(values[name]) > limit:
                errors[name] = f"is too long ({len(values[name])} characters, at most {limit})"
        if not values["client_id"] and "service_account_key" not in errors:
            errors["client_id"] = "is required: paste the Client ID of your app registration"
        elif any(c.isspace() for c in values["client_id"]):
            errors.setdefault("client_id", "must not contain spaces")
        if any(ord(c) < 32 for c in values["client_secret"]):
            errors["client_secret"] = "must not contain control characters"
        if spec is not None:
            if spec.requires_tenant:
                problem = validate_tenant(values["tenant"])
                if problem and "tenant" not in errors:
                    errors["tenant"] = problem
            else:
                values["tenant"] = ""  # only Microsoft-style providers have a tenant
            for name, given, derived in (
                ("authorization_url", update.authorization_url, spec.authorization_url_for(values["tenant"])),
                ("token_url", update.token_url, spec.token_url_for(values["tenant"])),
            ):
                if given and given != derived:
                    errors[name] = (
                        "is read-only: it derives from the provider and tenant (override providers in "
                        "MAILGATE_PROVIDERS_FILE)"
                    )
        problem = _check_redirect_uri(values["redirect_uri"])
        if problem and "redirect_uri" not in errors:
            errors["redirect_uri"] = problem
        expires_on = kept.client_secret_expires_on if kept is not None and not update.client_secret else None
        if update.client_secret_expires_on is not None:
            expires_on, problem = _parse_date(update.client_secret_expires_on)
            if problem:
                errors["client_secret_expires_on"] = problem
        if errors or spec is None or grant is None:
            raise ValidationError(errors)
        return OAuthConfig(provider=provider, grant=grant, **values, client_secret_expires_on=expires_on), spec

    # -- Email server page ------------------------------------------------------------------------------
    async def email_server(self, account: str = DEFAULT_ACCOUNT) -> EmailServerConfig:
        """The account's stored settings, else the defaults of its chosen provider."""
        async with self._db.session() as session:
            return await self._stored_server(session, account)

    async def _stored_server(self, session: AsyncSession, account: str) -> EmailServerConfig:
        server = await get_email_server(session, self._box, account)
        if server is not None:
            return server
        oauth = await get_oauth_config(session, self._box, account)
        spec = self._catalogue.providers.get(oauth.provider) if oauth else None
        return server_defaults(spec)

    async def save_email_server(
        self, update: EmailServerUpdate, account: str = DEFAULT_ACCOUNT, *, senders: list[str] | None = None
    ) -> EmailServerConfig:
        """Merge ``update`` into the account's stored settings (creating the account), validate the result
        whole, then store it (or nothing).  ``senders``: the account's extra senders, replaced when given
        (already validated, see :func:`mailgate.accounts.parse_senders`)."""
        async with self._db.session() as session:
            current = await self._stored_server(session, account)
            # File I/O off the event loop: the path is the user's, and may name anything (issue 20 point 9).
            ca_problem = await asyncio.to_thread(check_ca_file, merged(update.ca_file, current.ca_file))
            oauth = await get_oauth_config(session, self._box, account)
            spec = self._catalogue.providers.get(oauth.provider) if oauth else None
            server = validate_server(update, current, ca_problem, spec)
            await save_email_server(session, self._box, server, account)
            self.changes += 1
            fields = changed_fields(dataclasses.asdict(current), dataclasses.asdict(server))
            if server.delivery is not current.delivery:
                await self._delivery_changed(session, account, current.delivery, server.delivery, spec)
            if senders is not None:
                row = await ensure_account(session, account)
                if list(row.senders or []) != list(senders):
                    fields.append("senders")
                row.senders = list(senders)
        await self._record("email_server.changed", account, fields)
        return server

    async def _delivery_changed(
        self, session: AsyncSession, account: str, before: Delivery, after: Delivery, spec: ProviderSpec | None
    ) -> None:
        """A new delivery needs other scopes (a Graph token is refused by SMTP, a gmail.send token by
        SMTP): the consent given for the old one must be given again, and the token status says so."""
        tokens = await get_account(session, account)
        if tokens is None or not tokens.refresh_token_enc or spec is None:
            return
        scopes = " ".join(scopes_for(spec, "authorization_code", after))
        tokens.status = TokenStatus.REAUTHORIZATION_REQUIRED.value
        tokens.status_reason = (
            f"the delivery method changed from {before.value} to {after.value}, which needs the scopes {scopes}: "
            "click Authorize to consent to them"
        )
        tokens.access_token_enc = ""
        tokens.access_token_expires_at = None
        self._forget_tokens(account)


def _identity(config: OAuthConfig) -> tuple[str, ...]:
    """What a stored token belongs to: the client (and tenant), the grant and an app-only mailbox; for an
    app-only grant also its credential (a new one must be tried by the next token, not hidden by the old)."""
    identity = (config.provider, config.client_id, config.tenant, config.grant.value, config.mailbox)
    if not config.grant.app_only:
        return identity
    credential = "\0".join((config.client_secret, config.private_key_pem, config.service_account_key))
    return (*identity, hashlib.sha256(credential.encode()).hexdigest())


def _copied_expiry(update: OAuthConfigUpdate, source: OAuthConfig) -> str | None:
    """The expiry date a copy carries: the one sent, else the source's when its secret is the one copied."""
    if update.client_secret_expires_on is not None or update.client_secret:
        return update.client_secret_expires_on
    return source.client_secret_expires_on.isoformat() if source.client_secret_expires_on else ""


def _parse_date(text: str) -> tuple[date | None, str | None]:
    """An ISO date (``YYYY-MM-DD``), ``""`` for none, or why it is not one."""
    text = text.strip()
    if not text:
        return None, None
    try:
        return date.fromisoformat(text), None
    except ValueError:
        return None, f"{text[:40]!r} is not a date: write it as YYYY-MM-DD (e.g. 2027-06-30)"


def _check_redirect_uri(uri: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute URL such as http://localhost:8080/ddenterpriseapi/v2/oauth/redirect"
    if parts.fragment:
        return "must not contain a #fragment (RFC 6749 s.3.1.2)"
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "must use https:// unless the host is localhost (Google and Microsoft accept http only for localhost)"
    return None

"""The authorization server's memory and rules: consents, codes, tokens, counters.

Pure logic, no I/O: the HTTP routes and the SMTP server call these methods, tests call them directly.
Everything runs on one event loop thread (the routes are ``async def``), so no locks are needed.
Time comes from an injectable clock, so expiry is tested without sleeping.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .apponly import JWT_BEARER, AppOnlyRegistry
from .authorize import PKCE_CHARS, AuthorizationRequest, add_query, check_authorization_request, validate_account
from .client_auth import authenticate_client
from .config import SandboxClient, SandboxConfig
from .grant_failures import GrantFailures
from .problems import AuthorizationPageError, Flavor, TokenError
from .tokens import (
    id_token_claims,
    make_access_token,
    make_authorization_code,
    make_id_token,
    make_refresh_token,
    pkce_s256,
)

__all__ = ["GRANT_TYPES", "SMTP_SCOPES", "SandboxState", "SmtpAuthCheck"]

#: The grant types answered, as the counters name them (the JWT bearer grant's URN as ``jwt_bearer``).
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", "jwt_bearer")
#: Scopes whose access tokens the SMTP server accepts; a Graph-audience token is refused by Exchange SMTP.
SMTP_SCOPES = frozenset(
    {
        "https://outlook.office.com/SMTP.Send",
        "https://outlook.office365.com/SMTP.Send",
        "https://outlook.office.com/.default",
        "https://outlook.office365.com/.default",
        "https://mail.google.com/",
    }
)
_MS_MULTI_TENANT = ("common", "consumers")


@dataclass(frozen=True)
class SmtpAuthCheck:
    """The verdict on a bearer token presented to SMTP: ``account`` to send as, or why it was refused."""

    account: str | None
    reason: str = ""


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    account: str
    tenant: str
    nonce: str
    expires_at: float
    redeemed: bool = False


@dataclass
class _Grant:
    """One consent (or one client-credentials request): the family of the tokens issued from it."""

    grant_id: str
    client_id: str
    account: str | None
    scope: str
    tenant: str
    nonce: str = ""
    revoked: bool = False
    created_at: float = 0.0
    #: A fixed end whatever the use (Google Testing grants), or None.
    fixed_end: float | None = None


@dataclass
class _Refresh:
    grant_id: str
    expires_at: float
    dead_reason: str = ""


@dataclass
class _Access:
    grant_id: str
    client_id: str
    account: str | None
    scope: str
    expires_at: float


class SandboxState:
    """Clients, pending consents, codes, tokens and counters of one sandbox."""

    def __init__(self, config: SandboxConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._id_token_key = secrets.token_bytes(32)
        self._consents: dict[str, AuthorizationRequest] = {}
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._access: dict[str, _Access] = {}
        self.counters: Counter[str] = Counter()
        #: While False the token endpoint answers 503 (a provider outage).
        self.token_endpoint_available = True
        #: Revoked consents, expired secrets, Testing grants, a wrong mailbox consenting.
        self.failures = GrantFailures(clock)
        #: Certificates and service accounts of app-only identities, and the mailboxes that exist.
        self.app_only = AppOnlyRegistry([config.default_account])

    # --- authorization endpoint (RFC 6749 s.4.1.1, RFC 7636 s.4.3) ----------------------------------

    def begin_authorization(self, params: Mapping[str, str], *, tenant: str, flavor: Flavor) -> AuthorizationRequest:
        """Check an authorization request (see :func:`check_authorization_request`) and keep it pending."""
        now = self._clock()
        request = check_authorization_request(self.config, params, tenant=tenant, flavor=flavor, now=now)
        self._consents = {k: v for k, v in self._consents.items() if v.expires_at > now}
        self._consents[request.consent_id] = request
        self.counters["authorization_requests"] += 1
        return request

    def pending(self, consent_id: str) -> AuthorizationRequest:
        """The pending consent ``consent_id``; an error page if it is unknown, answered or expired."""
        request = self._consents.get(consent_id)
        if request is None or request.expires_at <= self._clock():
            raise AuthorizationPageError(
                "invalid_request",
                90015,
                "This consent request is unknown, expired or already answered. Start the authorization "
                "again from the application.",
            )
        return request

    def decide(self, consent_id: str, *, account: str, accept: bool) -> str:
        """Answer a consent (one time); the URL to redirect the browser to (RFC 6749 s.4.1.2).

        Raises ValueError when accepting with an unusable account (the consent stays pending).
        """
        request = self.pending(consent_id)
        if accept:
            problem = validate_account(account)
            if problem:
                raise ValueError(problem)
        del self._consents[consent_id]
        account = self.failures.consent_as or account
        if not accept:
            self.counters["consents_denied"] += 1
            params = {"error": "access_denied", "error_description": "The user denied consent"}
            return add_query(request.redirect_uri, {**params, "state": request.state})
        code = make_authorization_code()
        self._codes[code] = _Code(
            client_id=request.client.client_id,
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            scope=" ".join(request.scopes),
            account=account,
            tenant=request.tenant,
            nonce=request.nonce,
            expires_at=self._clock() + self.config.authorization_code_lifetime,
        )
        self.counters["authorizations"] += 1
        return add_query(request.redirect_uri, {"code": code, "state": request.state})

    # --- token endpoint (RFC 6749 s.3.2, s.4.1.3, s.4.4, s.6) ---------------------------------------

    def token_request(
        self,
        form: Mapping[str, str],
        *,
        authorization: str = "",
        tenant: str,
        flavor: Flavor,
        issuer: str,
        token_url: str = "",
    ) -> dict[str, object]:
        """Answer a token request: the JSON success body, or raise :class:`TokenError`.

        ``form`` holds the body parameters, ``authorization`` the Authorization header (HTTP Basic client
        authentication), when there was one; ``token_url`` is the URL the request was posted to (the ``aud`` a
        signed assertion must name).
        """
        grant_type = form.get("grant_type", "")
        counted = "jwt_bearer" if grant_type == JWT_BEARER else grant_type if grant_type in GRANT_TYPES else "other"
        self.counters[f"token_requests.{counted}"] += 1
        try:
            if not self.token_endpoint_available:
                self.counters["token_endpoint_unavailable"] += 1
                raise TokenError.unavailable()
            if not grant_type:
                raise TokenError.missing_parameter("grant_type")
            if (
                counted == "other"
                or (grant_type == "client_credentials" and flavor == "google")
                or (grant_type == JWT_BEARER and flavor == "microsoft")
            ):
                raise TokenError.unsupported_grant_type(grant_type)
            if grant_type == JWT_BEARER:
                # A service account's assertion is the only credential (RFC 7523 s.2.1): no client authentication.
                verified = self.app_only.verify_bearer(form.get("assertion", ""), token_url, self._clock())
                grant = self._new_grant(verified.client_id, verified.account, verified.scope, "", "")
                body = self._issue(grant, verified.scope, refresh=False, issuer="")
                self.counters["tokens_issued.jwt_bearer"] += 1
                return body
            if "client_assertion" in form:
                client_id = self.app_only.verify_client_assertion(dict(form), token_url, self._clock())
                found = self.config.client(client_id)
                if found is None:
                    raise TokenError.unknown_client(client_id, tenant or "sandbox")
                client = found
            else:
                client = authenticate_client(self.config, form, authorization, tenant)
                self.failures.check_client(client.client_id)
            if grant_type == "authorization_code":
                body = self._redeem_code(client, form, issuer)
            elif grant_type == "refresh_token":
                body = self._refresh_grant(client, form, issuer)
            else:
                body = self._client_credentials(client, form, tenant)
        except TokenError as exc:
            if exc.status != 503:
                self.counters[f"token_errors.{exc.error}"] += 1
            raise
        self.counters[f"tokens_issued.{grant_type}"] += 1
        return body

    def _redeem_code(self, client: SandboxClient, form: Mapping[str, str], issuer: str) -> dict[str, object]:
        code = form.get("code", "")
        if not code:
            raise TokenError.missing_parameter("code")
        record = self._codes.get(code)
        if record is None:
            raise TokenError.bad_code()
        if record.redeemed:
            raise TokenError.code_redeemed()
        if record.expires_at <= self._clock():
            raise TokenError.code_expired()
        if record.client_id != client.client_id:
            raise TokenError.bad_code("The code was issued to a different client.")
        redirect_uri = form.get("redirect_uri", "")
        if not redirect_uri:
            raise TokenError.missing_parameter("redirect_uri")
        if redirect_uri != record.redirect_uri:
            raise TokenError.redirect_uri_mismatch(redirect_uri, record.redirect_uri)
        verifier = form.get("code_verifier", "")
        if not verifier:
            raise TokenError.pkce_missing()
        expected = record.code_challenge.encode()
        if not PKCE_CHARS.match(verifier) or not hmac.compare_digest(pkce_s256(verifier).encode(), expected):
            raise TokenError.pkce_mismatch()
        record.redeemed = True  # one-time (RFC 6749 s.4.1.2)
        grant = self._new_grant(client.client_id, record.account, record.scope, record.tenant, record.nonce)
        return self._issue(grant, grant.scope, refresh=True, issuer=issuer)

    def _refresh_grant(self, client: SandboxClient, form: Mapping[str, str], issuer: str) -> dict[str, object]:
        token = form.get("refresh_token", "")
        if not token:
            raise TokenError.missing_parameter("refresh_token")
        record = self._refresh.get(token)
        if record is None:
            raise TokenError.refresh_token_dead("unknown refresh token")
        grant = self._grants[record.grant_id]
        if record.dead_reason:
            raise TokenError.refresh_token_dead(record.dead_reason)
        if grant.revoked:
            raise TokenError.refresh_token_dead("the grant was revoked")
        if why := self.failures.dead_reason(grant.account, grant.created_at, grant.fixed_end):
            raise TokenError.refresh_token_dead(why)
        if record.expires_at <= self._clock():
            raise TokenError.refresh_token_dead("expired after inactivity")
        if grant.client_id != client.client_id:
            raise TokenError.grant_of_other_client()
        scope = grant.scope
        if form.get("scope"):
            # A refresh may ask for less than was consented, never for more (RFC 6749 s.6).
            extra = set(form["scope"].split()) - set(grant.scope.split())
            if extra:
                raise TokenError.scope_not_consented(client.client_id, " ".join(sorted(extra)))
            scope = form["scope"]
        if self.config.rotate_refresh_tokens:
            # Microsoft: every answer carries a new refresh token; the sandbox kills the old one so that a
            # client that forgets to store the new one fails at once instead of after 90 days.
            record.dead_reason = "it was replaced by a newer refresh token (rotation)"
        else:
            # Google: no new refresh token; the stored one stays valid and its inactivity window slides.
            record.expires_at = self._clock() + self.config.refresh_token_lifetime
        return self._issue(grant, scope, refresh=self.config.rotate_refresh_tokens, issuer=issuer)

    def _client_credentials(self, client: SandboxClient, form: Mapping[str, str], tenant: str) -> dict[str, object]:
        if tenant in _MS_MULTI_TENANT:
            raise TokenError.client_credentials_on_common()
        if not client.client_secret:
            raise TokenError.missing_secret()
        scope = form.get("scope", "")
        if not scope:
            raise TokenError.missing_parameter("scope")
        if len(scope.split()) != 1 or not scope.endswith("/.default"):
            raise TokenError.client_credentials_scope(scope)
        # App-only token: no account, no refresh token, no id_token (RFC 6749 s.4.4.3).
        grant = self._new_grant(client.client_id, None, scope, tenant, "")
        return self._issue(grant, scope, refresh=False, issuer="")

    def _new_grant(self, client_id: str, account: str | None, scope: str, tenant: str, nonce: str) -> _Grant:
        end = self.failures.grant_end() if account else None
        grant = _Grant(uuid.uuid4().hex, client_id, account, scope, tenant, nonce, False, self._clock(), end)
        self._grants[grant.grant_id] = grant
        return grant

    def _issue(self, grant: _Grant, scope: str, *, refresh: bool, issuer: str) -> dict[str, object]:
        now = self._clock()
        lifetime = self.config.access_token_lifetime
        access = make_access_token()
        self._access[access] = _Access(grant.grant_id, grant.client_id, grant.account, scope, now + lifetime)
        body: dict[str, object] = {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
        }
        if refresh:
            token = make_refresh_token()
            self._refresh[token] = _Refresh(grant.grant_id, now + self.config.refresh_token_lifetime)
            body["refresh_token"] = token
        # Google says a fixed end in every answer of such a grant, refreshes included.
        body.update(self.failures.answer_fields(grant.fixed_end))
        if grant.account and "openid" in scope.split():
            claims = id_token_claims(
                issuer=issuer,
                client_id=grant.client_id,
                account=grant.account,
                tenant=grant.tenant,
                nonce=grant.nonce,
                now=int(now),
                lifetime=lifetime,
            )
            body["id_token"] = make_id_token(self._id_token_key, claims)
        return body

    def mint_tokens(self, account: str, *, client_id: str = "", scope: str = "", issuer: str = "") -> dict[str, object]:
        """Issue tokens for ``account`` without the consent flow (a shortcut for tests of SMTP).

        Not counted as a token request.
        """
        client = self.config.client(client_id) if client_id else self.config.clients[0]
        if client is None:
            raise ValueError(f"unknown client {client_id!r}")
        scope = scope or "https://outlook.office.com/SMTP.Send offline_access openid email"
        grant = self._new_grant(client.client_id, account, scope, "sandbox", "")
        return self._issue(grant, scope, refresh=True, issuer=issuer)

    # --- revocation (RFC 7009) and control ------------------------------------------------------------

    def revoke(self, token: str) -> bool:
        """Revoke ``token`` and the tokens issued with it (Google revokes the whole grant); True when known."""
        grant_id = ""
        if token in self._refresh:
            grant_id = self._refresh[token].grant_id
        elif token in self._access:
            grant_id = self._access[token].grant_id
        if not grant_id:
            return False
        self._grants[grant_id].revoked = True
        now = self._clock()
        for access in self._access.values():
            if access.grant_id == grant_id:
                access.expires_at = min(access.expires_at, now)
        self.counters["revocations"] += 1
        return True

    def revoke_all(self) -> int:
        """Invalidate every live refresh token (a password change or an admin revoking sessions); access
        tokens stay valid until they expire, as with the real providers.  Returns how many died."""
        killed = 0
        for record in self._refresh.values():
            if not record.dead_reason:
                record.dead_reason = "revoked by the administrator (password change or session revocation)"
                killed += 1
        return killed

    def expire_access_tokens(self) -> int:
        """Make every access token issued so far expired; returns how many were still valid."""
        now = self._clock()
        live = [a for a in self._access.values() if a.expires_at > now]
        for access in live:
            access.expires_at = now
        return len(live)

    # --- SMTP ---------------------------------------------------------------------------------------------

    def introspect(self, token: str) -> dict[str, object]:
        """The RFC 7662 s2.2 answer for ``token``: ``{"active": false}`` unless it is a live access token of
        this sandbox, else its ``email`` (the consenting mailbox; none for app-only tokens), scope and expiry."""
        record = self._access.get(token)
        if record is None or record.expires_at <= self._clock():
            return {"active": False}
        answer: dict[str, object] = {
            "active": True,
            "token_type": "Bearer",
            "client_id": record.client_id,
            "scope": record.scope,
            "exp": int(record.expires_at),
        }
        if record.account:
            answer.update(email=record.account, username=record.account, sub=record.account)
        return answer

    def check_smtp_token(self, token: str, user: str) -> SmtpAuthCheck:
        """Whether SMTP may accept ``token`` for mailbox ``user`` ("" = the token's own account)."""
        record = self._access.get(token)
        if record is None:
            return SmtpAuthCheck(None, "unknown access token")
        if record.expires_at <= self._clock():
            return SmtpAuthCheck(None, "access token expired")
        if not SMTP_SCOPES.intersection(record.scope.split()):
            return SmtpAuthCheck(None, "access token lacks an SMTP scope")
        if record.account is None:
            # App-only token (SMTP.SendAsApp): the service principal may send as the mailbox named.
            return SmtpAuthCheck(user or None, "" if user else "no mailbox named")
        if user and user.lower() != record.account.lower():
            return SmtpAuthCheck(None, "user does not match the account that consented")
        return SmtpAuthCheck(record.account)

    # --- counters -------------------------------------------------------------------------------------

    def reset_stats(self) -> None:
        """Set every counter back to zero."""
        self.counters.clear()

    def stats(self) -> dict[str, Any]:
        """Counters as JSON-ready data (``GET /_control/stats``)."""
        c = self.counters

        def by_grant(prefix: str) -> dict[str, int]:
            return {g: c[f"{prefix}.{g}"] for g in (*GRANT_TYPES, "other")}

        errors = {k.split(".", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("token_errors.")}
        plain = (
            "token_endpoint_unavailable",
            "authorization_requests",
            "authorizations",
            "consents_denied",
            "revocations",
            "smtp_auth_ok",
            "smtp_auth_failed",
            "smtp_sender_refused",
            "smtp_messages",
        )
        return {
            "token_requests": by_grant("token_requests"),
            "tokens_issued": by_grant("tokens_issued"),
            "token_errors": errors,
            **{name: c[name] for name in plain},
            "token_endpoint_available": self.token_endpoint_available,
        }

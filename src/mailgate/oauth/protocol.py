"""OAuth 2.0 requests and answers as pure functions (RFC 6749, RFC 7636, OpenID Connect Core).

Nothing here does I/O: building the authorization URL and the token request bodies, parsing token
answers and errors into typed results with what the administrator should do.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from ..errors import ReauthorizationRequiredError, TokenEndpointError
from ..types import Grant, OAuthConfig, ProviderSpec, TokenResponse
from .assertions import parse_service_account_key
from .pkce import code_challenge

__all__ = [
    "account_from_id_token",
    "app_only_error",
    "authorization_url",
    "code_exchange_body",
    "error_from_token_answer",
    "parse_token_response",
    "refresh_body",
]

_AADSTS = re.compile(r"AADSTS(\d+)")

# What the administrator should do for each Entra error code (shared/PROVIDERS.md).
_AADSTS_HINTS: dict[str, str] = {
    "7000215": "The client secret is wrong: paste the secret's Value (not its Secret ID) into Client Secret.",
    "7000222": "The client secret has expired: create a new one under Certificates & secrets and save it.",
    "700082": "The refresh token expired after 90 days without use: authorize again.",
    "70008": "The refresh token has expired: authorize again.",
    "50173": "The grant was revoked (password change or an administrator): authorize again.",
    "65001": "Consent is missing: grant consent (or ask an administrator for admin consent), then authorize.",
    "50011": "The redirect URI does not match: register exactly the Authorized redirect URI shown on the OAuth "
    "page (http vs https, host, port and path must be identical).",
    "500112": "The redirect URI does not match (often a proxy changes http/https): register exactly the URI "
    "shown on the OAuth page.",
    "50194": "The app is single-tenant: set the Tenant field to its Directory (tenant) ID instead of common.",
    "90002": "The tenant was not found: check the Tenant field (Directory ID or verified domain).",
    "700016": "The application was not found in this tenant: check the Client ID and the Tenant.",
    "70011": "The scope was refused; this is a mailgate bug, please report it.",
    "900144": "A required parameter is missing; this is a mailgate bug, please report it.",
    # App-only (client credentials).
    "9001023": "Application (client credentials) needs the directory: set the Tenant field to the Directory "
    "(tenant) ID, not common, organizations or consumers.",
    "700027": "The client assertion was refused: upload this certificate (the .cer/.pem, public part) under "
    "Certificates & secrets > Certificates of the app registration, and check that the private key uploaded "
    "to mailgate is its own.",
    "700024": "The client assertion is outside its validity time: check the mailgate server's clock (NTP).",
    "50012": "The client assertion was refused (audience, signature or replay): upload the certificate and "
    "its private key again on the OAuth page.",
    "7000218": "The app registration needs a credential: enter the client secret or upload a certificate.",
    "1002012": "The scope was refused; this is a mailgate bug, please report it.",
}

_ERROR_HINTS: dict[str, str] = {
    "invalid_client": "The client ID or client secret is wrong: check both on the OAuth page.",
    "unauthorized_client": "This client may not use this grant: check the app registration (a Web application "
    "client) and, for Google Workspace delegation, the Admin console.",
    "invalid_scope": "The provider refused the scope: check the API permissions of the app registration.",
    "invalid_request": "The provider refused the request; check the OAuth page settings.",
    "unsupported_grant_type": "The provider refused the grant type; check the app registration.",
    "invalid_grant": "The authorization is no longer valid: authorize again on the OAuth page.",
}


def authorization_url(
    provider: ProviderSpec,
    config: OAuthConfig,
    *,
    state: str,
    code_verifier: str,
    login_hint: str = "",
    scopes: Sequence[str] | None = None,
) -> str:
    """The URL the browser is sent to for consent (RFC 6749 s.4.1.1, PKCE S256).

    ``scopes``: those of the account's delivery (:func:`mailgate.providers.scopes_for`), else the provider's.
    """
    params: dict[str, str] = {
        "client_id": config.client_id,
        "response_type": "code",
        "redirect_uri": config.redirect_uri,
        "scope": " ".join(provider.scopes if scopes is None else scopes),
        "state": state,
        "code_challenge": code_challenge(code_verifier),
        "code_challenge_method": "S256",
    }
    params.update(dict(provider.authorization_params))
    if login_hint:
        params["login_hint"] = login_hint
    return f"{provider.authorization_url_for(config.tenant)}?{urlencode(params)}"


def _client_auth(config: OAuthConfig) -> dict[str, str]:
    # client_secret_post: both Google and Entra accept it (RFC 6749 s.2.3.1).
    body = {"client_id": config.client_id}
    if config.client_secret:
        body["client_secret"] = config.client_secret
    return body


def code_exchange_body(config: OAuthConfig, *, code: str, code_verifier: str, redirect_uri: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
        **_client_auth(config),
    }


def refresh_body(
    config: OAuthConfig, provider: ProviderSpec, refresh_token: str, scopes: Sequence[str] | None = None
) -> dict[str, str]:
    """The refresh grant (RFC 6749 s.6); ``scopes`` as for :func:`authorization_url`."""
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token, **_client_auth(config)}
    scopes = provider.scopes if scopes is None else scopes
    if provider.requires_tenant or "offline_access" in scopes:
        # Entra issues the access token for the scopes asked at refresh time.
        body["scope"] = " ".join(scopes)
    return body


def app_only_error(exc: TokenEndpointError, config: OAuthConfig, scopes: tuple[str, ...]) -> TokenEndpointError:
    """A token endpoint refusal of an app-only grant, with what the administrator must do.

    There is no consent to renew: ``invalid_grant`` is a credential problem, not "authorize again".
    """
    hint = exc.hint
    if config.grant is Grant.SERVICE_ACCOUNT:
        if exc.error == "unauthorized_client":
            client_id = parse_service_account_key(config.service_account_key).client_id
            hint = (
                "Domain-wide delegation is not allowed for this service account: in the Google Admin console, open "
                f"Security > API controls > Domain-wide delegation, click Add new, enter the client ID {client_id} "
                f"and the OAuth scope {','.join(scopes)}, then Authorize (it can take a few minutes)."
            )
        elif exc.error == "invalid_grant":
            hint = (
                f"Google refused the service account's assertion: check that the mailbox to impersonate "
                f"({config.mailbox}) exists in the Workspace domain, that the key was not deleted in the Cloud "
                "console, and that the server's clock is right."
            )
    elif exc.error == "invalid_grant" or (not exc.error_code and exc.error == "invalid_client"):
        hint = "Check the Client ID, Tenant and the client secret or certificate on the OAuth page."
    return TokenEndpointError(exc.message, hint=hint, error=exc.error, error_code=exc.error_code)


def parse_token_response(data: Mapping[str, Any], *, now: datetime) -> TokenResponse:
    """A 200 answer of the token endpoint (RFC 6749 s.5.1)."""
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenEndpointError(
            "The token endpoint answered without an access_token.",
            hint="Check that the token URL is the provider's token endpoint.",
        )
    try:
        expires_in = int(data.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600
    # Google: "the remaining lifetime of the refresh token in seconds", only for grants with a fixed end.
    refresh_expires_at = None
    if data.get("refresh_token_expires_in") is not None:
        try:
            refresh_expires_at = now + timedelta(seconds=max(int(data["refresh_token_expires_in"]), 0))
        except (TypeError, ValueError):
            refresh_expires_at = None
    return TokenResponse(
        access_token=access_token,
        expires_at=now + timedelta(seconds=max(expires_in, 0)),
        refresh_token=str(data.get("refresh_token") or ""),
        scope=str(data.get("scope") or ""),
        id_token=str(data.get("id_token") or ""),
        token_type=str(data.get("token_type") or "Bearer"),
        refresh_token_expires_at=refresh_expires_at,
    )


def error_from_token_answer(status: int, data: Mapping[str, Any] | None, text: str) -> TokenEndpointError:
    """An error answer of the token endpoint (RFC 6749 s.5.2) as a typed error with what to do."""
    data = data or {}
    error = str(data.get("error") or "")
    description = str(data.get("error_description") or "").strip()
    match = _AADSTS.search(description)
    code = match.group(1) if match else ""
    hint = _AADSTS_HINTS.get(code) or _ERROR_HINTS.get(error) or "Check the OAuth page settings."
    short = description.splitlines()[0] if description else (text[:200] if not error else "")
    message = f"The token endpoint refused the request: {error or f'HTTP {status}'}"
    if short:
        message += f" ({short})"
    cls = ReauthorizationRequiredError if error == "invalid_grant" else TokenEndpointError
    return cls(message, hint=hint, error=error, error_code=f"AADSTS{code}" if code else "")


def account_from_id_token(id_token: str) -> str:
    """The consenting mailbox from an ID token's ``email`` or ``preferred_username`` claim.

    The ID token came straight from the token endpoint over TLS, so TLS server validation stands in for
    checking its signature (OpenID Connect Core 1.0 s.3.1.3.7, item 6).
    """
    parts = id_token.split(".")
    if len(parts) < 2:
        return ""
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return ""
    if not isinstance(claims, dict):
        return ""
    for claim in ("email", "preferred_username", "upn"):
        value = claims.get(claim)
        if isinstance(value, str) and "@" in value:
            return value
    return ""

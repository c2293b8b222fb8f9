"""The authorization request (RFC 6749 s.4.1.1, RFC 7636 s.4.3): its checks, as a pure function."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from .config import REDIRECT_URI_ENV, SandboxClient, SandboxConfig
from .problems import AuthorizationPageError, AuthorizationRedirectError, Flavor

__all__ = [
    "PKCE_CHARS",
    "AuthorizationRequest",
    "add_query",
    "check_authorization_request",
    "validate_account",
]

#: RFC 7636 s.4.1 (verifier) and s.4.2 (challenge): 43-128 unreserved characters.
PKCE_CHARS = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_ACCOUNT = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: How long a consent page may stay open before it must be started again.
CONSENT_LIFETIME = 3600


@dataclass(frozen=True)
class AuthorizationRequest:
    """A valid authorization request waiting for the user's decision on the consent page."""

    consent_id: str
    client: SandboxClient
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    code_challenge: str
    tenant: str
    flavor: Flavor
    nonce: str
    login_hint: str
    expires_at: float


def add_query(uri: str, params: Mapping[str, str]) -> str:
    """``uri`` with ``params`` added to its query, keeping the query it already has (RFC 6749 s.3.1.2)."""
    parts = urlsplit(uri)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def validate_account(account: str) -> str | None:
    """Why ``account`` cannot be the consenting mailbox, or None when it can."""
    if not _ACCOUNT.match(account):
        return "Enter an email address such as user@sandbox.test."
    return None


def _client_and_redirect(
    config: SandboxConfig, params: Mapping[str, str], tenant: str, flavor: Flavor
) -> tuple[SandboxClient, str]:
    """The client and redirect URI, or an error page: until both are known to be right, nothing may be
    sent to the redirect URI (RFC 6749 s.4.1.2.1, an open redirector otherwise)."""
    if config.tenants and flavor == "microsoft" and tenant not in config.tenants:
        raise AuthorizationPageError(
            "invalid_tenant",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
            "signing into the correct cloud.",
            (("Known tenants", ", ".join(config.tenants)),),
        )
    client_id = params.get("client_id", "")
    if not client_id:
        raise AuthorizationPageError("invalid_request", 900144, "The request must contain the parameter 'client_id'.")
    client = config.client(client_id)
    if client is None:
        raise AuthorizationPageError(
            "invalid_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant or 'sandbox'}'. The OAuth client was not found: check the Client ID.",
            (("Client ID received", client_id),),
        )
    redirect_uri = params.get("redirect_uri", "")
    registered = (("Expected (registered) redirect URIs", "\n".join(client.redirect_uris) or "(none)"),)
    if not redirect_uri:
        raise AuthorizationPageError(
            "invalid_request", 900144, "The request must contain the parameter 'redirect_uri'.", registered
        )
    if redirect_uri not in client.redirect_uris:
        # Byte-exact comparison, as both providers do (RFC 6749 s.3.1.2.3, RFC 9700 s.2.1).
        raise AuthorizationPageError(
            "redirect_uri_mismatch",
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect "
            f"URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the "
            "request matches one added to your application, character for character.",
            (("Redirect URI received", redirect_uri), *registered),
            hint=(
                f"To accept this redirect URI, restart the sandbox with --redirect-uri '{redirect_uri}' "
                f"(or set {REDIRECT_URI_ENV}); by default it accepts the one MAILGATE_BASE_URL gives. Or give "
                "mailgate a registered one: its redirect URI follows MAILGATE_BASE_URL, else the port of "
                "mailgate serve."
            ),
        )
    return client, redirect_uri


def check_authorization_request(
    config: SandboxConfig, params: Mapping[str, str], *, tenant: str, flavor: Flavor, now: float
) -> AuthorizationRequest:
    """Check an authorization request: the consent to show, or an error.

    Raises :class:`AuthorizationPageError` for an unknown client or a bad redirect URI (shown to the user),
    :class:`AuthorizationRedirectError` for the other problems (sent back to the client).
    """
    client, redirect_uri = _client_and_redirect(config, params, tenant, flavor)
    state = params.get("state", "")

    def refuse(error: str, aadsts: int, text: str) -> AuthorizationRedirectError:
        description = f"AADSTS{aadsts}: {text}" if flavor == "microsoft" else text
        return AuthorizationRedirectError(redirect_uri, error, description, state)

    response_type = params.get("response_type", "")
    if not response_type:
        raise refuse("invalid_request", 900144, "The request must contain the parameter 'response_type'.")
    if response_type != "code":
        raise refuse("unsupported_response_type", 70015, f"The response_type '{response_type}' is not supported.")
    if not state:
        # Real providers make state optional; mailgate must always send one (CSRF defence, RFC 9700
        # s.2.1), so the sandbox insists.
        raise refuse("invalid_request", 900144, "The sandbox requires the parameter 'state'.")
    scopes = tuple(params.get("scope", "").split())
    if not scopes:
        raise refuse("invalid_request", 900144, "The request must contain the parameter 'scope'.")
    challenge = params.get("code_challenge", "")
    if not challenge:
        raise refuse("invalid_request", 9002325, "Proof Key for Code Exchange is required: send a code_challenge.")
    if params.get("code_challenge_method", "") != "S256" or not PKCE_CHARS.match(challenge):
        # Without a method RFC 7636 s.4.3 means "plain", which RFC 9700 s.2.1.1 tells servers to refuse.
        raise refuse("invalid_request", 5000, "Invalid code_challenge: code_challenge_method must be S256.")
    return AuthorizationRequest(
        consent_id=secrets.token_urlsafe(24),
        client=client,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        code_challenge=challenge,
        tenant=tenant,
        flavor=flavor,
        nonce=params.get("nonce", ""),
        login_hint=params.get("login_hint", ""),
        expires_at=now + CONSENT_LIFETIME,
    )

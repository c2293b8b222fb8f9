"""Small frozen value objects shared by every layer.  No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime

__all__ = [
    "Authentication",
    "Delivery",
    "EmailServerConfig",
    "Grant",
    "OAuthConfig",
    "ProviderSpec",
    "Security",
    "TokenResponse",
    "TokenStatus",
]


class Security(enum.StrEnum):
    STARTTLS = "starttls"
    SSL = "ssl"
    NONE = "none"


class Authentication(enum.StrEnum):
    NONE = "none"
    PASSWORD = "password"
    OAUTH = "oauth"


class Delivery(enum.StrEnum):
    """How an account hands its messages over: SMTP submission, Microsoft Graph ``sendMail`` or the Gmail API."""

    SMTP = "smtp"
    GRAPH = "graph"
    GMAIL_API = "gmail_api"

    @property
    def over_http(self) -> bool:
        """Whether this delivery is an HTTP API (no SMTP host, port or security needed)."""
        return self is not Delivery.SMTP


class Grant(enum.StrEnum):
    """How an account obtains its access tokens."""

    #: The guide's flow: a person consents once, mailgate keeps the refresh token (RFC 6749 s.4.1).
    AUTHORIZATION_CODE = "authorization_code"
    #: Microsoft app-only: "Application (client credentials)" with a secret or a certificate (RFC 6749 s.4.4).
    CLIENT_CREDENTIALS = "client_credentials"
    #: Google Workspace service account with domain-wide delegation: the JWT bearer grant (RFC 7523 s.2.1).
    SERVICE_ACCOUNT = "service_account"

    @property
    def app_only(self) -> bool:
        """No consent and no refresh token: a new access token is fetched by the grant itself."""
        return self is not Grant.AUTHORIZATION_CODE


class TokenStatus(enum.StrEnum):
    """Where the consent of the configured account stands."""

    NOT_AUTHORIZED = "not_authorized"
    VALID = "valid"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"


@dataclass(frozen=True)
class ProviderSpec:
    """One entry of the provider catalogue (bundled ``providers.toml`` plus ``MAILGATE_PROVIDERS_FILE``).

    ``authorization_url``/``token_url`` may contain ``{tenant}``; ``requires_tenant`` says the provider
    needs the Tenant field (Microsoft).
    """

    name: str
    label: str
    authorization_url: str
    token_url: str
    scopes: tuple[str, ...]
    smtp_host: str
    smtp_port: int
    smtp_security: Security
    revocation_url: str = ""
    requires_tenant: bool = False
    default_tenant: str = ""
    #: Extra query parameters of the authorization request (Google: access_type=offline, prompt=consent).
    authorization_params: tuple[tuple[str, str], ...] = ()
    messages_per_minute: int = 0
    max_connections: int = 0
    max_recipients: int = 0
    messages_per_day: int = 0
    #: Microsoft Graph base URL (delivery ``graph``); "" when the provider has no Graph API.
    graph_url: str = ""
    #: Gmail API base URL (delivery ``gmail_api``); "" when the provider has no Gmail API.
    gmail_url: str = ""
    #: Grants the provider offers besides the authorization code (``client_credentials``, ``service_account``).
    app_grants: tuple[str, ...] = ()
    #: Scopes of app-only tokens for SMTP (Microsoft: ``https://outlook.office365.com/.default``).
    app_scopes: tuple[str, ...] = ()

    def authorization_url_for(self, tenant: str) -> str:
        return self.authorization_url.replace("{tenant}", tenant or self.default_tenant)

    def token_url_for(self, tenant: str) -> str:
        return self.token_url.replace("{tenant}", tenant or self.default_tenant)


@dataclass(frozen=True)
class OAuthConfig:
    """What the administrator entered on the OAuth page.  ``client_secret`` is in clear, in memory only."""

    provider: str
    tenant: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    #: When the client secret expires, as the administrator entered it (Microsoft shows it); None: unknown.
    client_secret_expires_on: date | None = None
    grant: Grant = Grant.AUTHORIZATION_CODE
    #: App-only: the mailbox mailgate sends as (XOAUTH2 user; the ``sub`` a service account impersonates).
    mailbox: str = ""
    #: Client credentials with a certificate: the PEM certificate (public) and its PEM private key.
    certificate_pem: str = ""
    private_key_pem: str = field(default="", repr=False)
    #: Service account: the JSON key file as downloaded from the Google Cloud console.
    service_account_key: str = field(default="", repr=False)

    @property
    def client_secret_set(self) -> bool:
        return bool(self.client_secret)


@dataclass(frozen=True)
class EmailServerConfig:
    """What the administrator entered on the Email server page.  ``password`` is in clear, in memory only."""

    host: str
    port: int
    security: Security
    username: str
    sender: str
    authentication: Authentication
    password: str = field(default="", repr=False)
    ca_file: str = ""
    #: Seconds for connect and for each SMTP command (each HTTP request for the HTTP deliveries).
    timeout: float = 30.0
    #: How messages are handed over; the SMTP fields (host, port, security, ca_file) serve ``smtp`` only.
    delivery: Delivery = Delivery.SMTP


@dataclass(frozen=True)
class TokenResponse:
    """A successful token endpoint answer (RFC 6749 s.5.1).  Secrets stay out of the repr."""

    access_token: str = field(repr=False)
    expires_at: datetime
    refresh_token: str = field(default="", repr=False)
    scope: str = ""
    id_token: str = field(default="", repr=False)
    token_type: str = "Bearer"
    #: When the refresh token dies whatever its use (Google's ``refresh_token_expires_in``, sent for grants
    #: with a fixed lifetime: a consent screen in Testing, time-based access); None: not said.
    refresh_token_expires_at: datetime | None = None

"""Configuration of the sandbox: small frozen objects, passed in, never a global."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

__all__ = [
    "DEFAULT_CLIENT",
    "REDIRECT_URI_ENV",
    "SandboxClient",
    "SandboxConfig",
    "SmtpFailureStyle",
]

#: How the SMTP server refuses a bad XOAUTH2 token (see shared/PROVIDERS.md, "SASL mechanisms").
SmtpFailureStyle = Literal["google", "microsoft"]


@dataclass(frozen=True)
class SandboxClient:
    """An OAuth client registered with the sandbox (an "app registration").

    ``redirect_uris`` are compared byte for byte with the ``redirect_uri`` of a request, as Google and
    Microsoft do (trailing slash and scheme included).  An empty ``client_secret`` makes a public client,
    which authenticates with PKCE alone.
    """

    client_id: str
    client_secret: str = field(repr=False)
    #: Stored as a tuple; any sequence (a list) is accepted.
    redirect_uris: Sequence[str]
    #: Shown on the consent page.
    name: str = "Sandbox client"

    def __post_init__(self) -> None:
        # Accept a list for convenience, keep a tuple so the object stays immutable.
        object.__setattr__(self, "redirect_uris", tuple(self.redirect_uris))
        if not self.client_id:
            raise ValueError("client_id must not be empty")

    def with_redirect_uris(self, redirect_uris: Sequence[str]) -> SandboxClient:
        """This client registered with ``redirect_uris`` instead of its own (e.g. mailgate on another port)."""
        return replace(self, redirect_uris=tuple(redirect_uris))


#: The client every sandbox knows; the redirect URI is mailgate's default one (MAILGATE_BASE_URL default).
DEFAULT_CLIENT = SandboxClient(
    client_id="sandbox-client",
    client_secret="sandbox-secret",
    redirect_uris=("http://localhost:8080/ddenterpriseapi/v2/oauth/redirect",),
    name="mailgate (sandbox)",
)

#: The environment variable of ``mailgate sandbox --redirect-uri`` (the redirect URIs the sandbox accepts).
REDIRECT_URI_ENV = "MAILGATE_SANDBOX_REDIRECT_URI"


@dataclass(frozen=True)
class SandboxConfig:
    """Everything a :class:`~mailgate.sandbox.Sandbox` needs.  Port 0 picks a free port."""

    host: str = "127.0.0.1"
    http_port: int = 8765
    smtp_port: int = 8587
    #: ``expires_in`` of access tokens, seconds (Entra: 60-90 min, Google: 1 h).
    access_token_lifetime: int = 3600
    #: Microsoft rotates refresh tokens on every refresh; Google (False) answers without a refresh token.
    rotate_refresh_tokens: bool = True
    #: ``google``: 334 error challenge, then ``535 5.7.8``; ``microsoft``: ``535 5.7.3`` at once.
    smtp_failure_style: SmtpFailureStyle = "microsoft"
    clients: Sequence[SandboxClient] = (DEFAULT_CLIENT,)
    #: The account proposed on the consent page (and used by login-free helpers).
    default_account: str = "user@sandbox.test"
    #: Where the CA certificate (``sandbox-ca.pem``), ``sandbox.json`` and received ``.eml`` files go;
    #: None: a temporary directory removed by ``stop()``.
    state_dir: Path | None = None
    #: Authorization codes are short-lived (RFC 6749 s.4.1.2 recommends at most 10 minutes).
    authorization_code_lifetime: int = 600
    #: Entra refresh tokens expire after 90 days of inactivity.
    refresh_token_lifetime: int = 90 * 24 * 3600
    #: Tenants the Microsoft-shaped endpoints accept; empty: any tenant (AADSTS90002 otherwise).
    tenants: Sequence[str] = ()
    #: Accounts that may use AUTH PLAIN/LOGIN with a password (for password-auth tests); empty: no
    #: password mechanisms are offered at all, as on an OAuth-only server.
    smtp_password_users: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    #: Largest message accepted (Gmail advertises ``SIZE 35882577``).
    smtp_max_message_size: int = 35_882_577
    #: Days the SMTP server's certificate stays valid from the start (None: trustme's default, years); a few
    #: days make a certificate close to expiry.
    smtp_certificate_days: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "clients", tuple(self.clients))
        object.__setattr__(self, "tenants", tuple(self.tenants))
        object.__setattr__(self, "smtp_password_users", dict(self.smtp_password_users))
        if self.state_dir is not None:
            object.__setattr__(self, "state_dir", Path(self.state_dir))
        if self.smtp_failure_style not in ("google", "microsoft"):
            raise ValueError("smtp_failure_style must be 'google' or 'microsoft'")
        for name in ("access_token_lifetime", "authorization_code_lifetime", "refresh_token_lifetime"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        for name in ("http_port", "smtp_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} must be between 0 and 65535")
        ids = [c.client_id for c in self.clients]
        if len(set(ids)) != len(ids):
            raise ValueError("client ids must be unique")

    def client(self, client_id: str) -> SandboxClient | None:
        """The registered client with this id, or None."""
        for c in self.clients:
            if c.client_id == client_id:
                return c
        return None

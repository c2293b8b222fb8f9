"""Process settings: a small frozen object built once at the edge from the environment and passed down."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigurationError
from .providers import check_endpoint_url

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONTEXT_PATH",
    "HttpSettings",
    "NotifierSettings",
    "OutboxSettings",
    "ProxyNetwork",
    "RelaySettings",
    "Settings",
    "local_base_url",
    "parse_trusted_proxies",
]

DEFAULT_CONTEXT_PATH = "/ddenterpriseapi"

ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(text: str) -> tuple[ProxyNetwork, ...]:
    """``MAILGATE_TRUSTED_PROXIES``: comma-separated addresses or CIDR networks (``10.0.0.0/8, ::1``)."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"MAILGATE_TRUSTED_PROXIES: {item!r} is not an IP address or network",
                hint="List the addresses (or CIDR networks) of your reverse proxies, e.g. 127.0.0.1,10.0.0.0/8.",
            ) from None
    return tuple(networks)


def local_base_url(port: int) -> str:
    """The base URL of a mailgate listening on ``port`` of this machine, as a browser here reaches it.

    ``localhost``, not an address: both providers accept ``http://`` redirect URIs only for localhost.
    """
    return f"http://localhost:{port}"


DEFAULT_BASE_URL = local_base_url(8080)


@dataclass(frozen=True)
class OutboxSettings:
    """Tuning of the outbox and its worker (``MAILGATE_OUTBOX_*``).  Sending limits come from the catalogue."""

    #: Largest message accepted, in bytes of the RFC 5322 message (Gmail's limit: 25 MB).
    max_message_bytes: int = 25 * 1024 * 1024
    #: First retry delay; doubled per attempt (with jitter) up to ``retry_max_delay_seconds``.
    retry_base_seconds: float = 30.0
    retry_max_delay_seconds: float = 3600.0
    #: A message still not delivered this long after it was queued becomes ``failed``.
    retry_deadline_seconds: float = 2 * 86400.0
    #: A claimed message returns to the queue when its worker has not finished it within this time.
    lease_seconds: float = 120.0
    #: How often an idle worker looks for work written by other processes.
    poll_seconds: float = 1.0
    #: SMTP connections per account when the provider sets no ``max_connections``.
    default_connections: int = 3
    #: Request bodies over 1 MiB that the messages API holds at once (received, being composed and stored),
    #: in bytes; further large requests wait their turn, unread.  Composing one takes about three times its
    #: size at its peak.
    upload_memory_bytes: int = 100 * 1024 * 1024
    #: Sent messages (their rows and bodies) are deleted this many days after they were sent, by the worker.
    keep_sent_days: float = 30.0

    _ENV = {  # noqa: RUF012 - a class constant, not a field (no annotation)
        "MAILGATE_OUTBOX_MAX_MESSAGE_BYTES": ("max_message_bytes", int),
        "MAILGATE_OUTBOX_RETRY_BASE_SECONDS": ("retry_base_seconds", float),
        "MAILGATE_OUTBOX_RETRY_MAX_DELAY_SECONDS": ("retry_max_delay_seconds", float),
        "MAILGATE_OUTBOX_RETRY_DEADLINE_SECONDS": ("retry_deadline_seconds", float),
        "MAILGATE_OUTBOX_LEASE_SECONDS": ("lease_seconds", float),
        "MAILGATE_OUTBOX_POLL_SECONDS": ("poll_seconds", float),
        "MAILGATE_OUTBOX_CONNECTIONS": ("default_connections", int),
        "MAILGATE_OUTBOX_UPLOAD_MEMORY_BYTES": ("upload_memory_bytes", int),
        "MAILGATE_OUTBOX_KEEP_SENT_DAYS": ("keep_sent_days", float),
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OutboxSettings:
        return cls(**_numbers_from_env(env, cls._ENV))  # type: ignore[arg-type]


@dataclass(frozen=True)
class HttpSettings:
    """Defences of the HTTP server against clients that hold connections open (``MAILGATE_HTTP_*``)."""

    #: A client must have sent a request's complete headers this many seconds after it connected, or after the
    #: previous response on its connection; else the connection is closed (like nginx's client_header_timeout).
    header_timeout_seconds: float = 10.0
    #: Connections open at once; further ones are answered 503 and closed at once.  0: 4096, or half the
    #: process's open-file limit when that is lower.
    max_connections: int = 0

    _ENV = {  # noqa: RUF012 - a class constant, not a field (no annotation)
        "MAILGATE_HTTP_HEADER_TIMEOUT_SECONDS": ("header_timeout_seconds", float),
        "MAILGATE_HTTP_MAX_CONNECTIONS": ("max_connections", int),
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HttpSettings:
        return cls(**_numbers_from_env(env, cls._ENV))  # type: ignore[arg-type]


@dataclass(frozen=True)
class NotifierSettings:
    """The alert notifier's timing (``MAILGATE_ALERTS_*``)."""

    #: How often the problems are compared with the conditions already announced.
    poll_seconds: float = 60.0
    #: First retry of a notification the webhook (or email) did not take; doubled per attempt...
    retry_base_seconds: float = 30.0
    #: ...up to this delay between attempts...
    retry_max_delay_seconds: float = 3600.0
    #: ...and given up this long after the notification was made.
    retry_deadline_seconds: float = 3 * 86400.0

    _ENV = {  # noqa: RUF012 - a class constant, not a field (no annotation)
        "MAILGATE_ALERTS_POLL_SECONDS": ("poll_seconds", float),
        "MAILGATE_ALERTS_RETRY_BASE_SECONDS": ("retry_base_seconds", float),
        "MAILGATE_ALERTS_RETRY_MAX_DELAY_SECONDS": ("retry_max_delay_seconds", float),
        "MAILGATE_ALERTS_RETRY_DEADLINE_SECONDS": ("retry_deadline_seconds", float),
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NotifierSettings:
        return cls(**_numbers_from_env(env, cls._ENV))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RelaySettings:
    """The SMTP relay for applications that only speak SMTP with a password (``MAILGATE_RELAY_*``).

    Off unless a port is set.  STARTTLS on ``port`` (AUTH only after it), implicit TLS on ``tls_port``.
    """

    port: int | None = None
    host: str = "127.0.0.1"
    #: Implicit TLS (SMTPS, RFC 8314 s3.3) for clients that cannot do STARTTLS.
    tls_port: int | None = None
    #: PEM certificate (chain) and key; without them a self-signed pair is generated in the data dir.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Client networks that may relay without AUTH (devices that cannot authenticate); none by default.
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.port is not None or self.tls_port is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RelaySettings:
        values: dict[str, object] = {}
        for key, attr in (("MAILGATE_RELAY_PORT", "port"), ("MAILGATE_RELAY_TLS_PORT", "tls_port")):
            if env.get(key):
                values[attr] = _port(key, env[key])
        if env.get("MAILGATE_RELAY_HOST"):
            values["host"] = env["MAILGATE_RELAY_HOST"].strip()
        for key, attr in (("MAILGATE_RELAY_TLS_CERT", "tls_cert"), ("MAILGATE_RELAY_TLS_KEY", "tls_key")):
            if env.get(key):
                values[attr] = Path(env[key])
        if env.get("MAILGATE_RELAY_TRUSTED_NETWORKS"):
            values["trusted_networks"] = parse_networks(env["MAILGATE_RELAY_TRUSTED_NETWORKS"])
        relay = cls(**values)  # type: ignore[arg-type]
        relay.check()
        return relay

    def check(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError(
                "MAILGATE_RELAY_TLS_CERT and MAILGATE_RELAY_TLS_KEY go together: set both, or neither "
                "(then a self-signed certificate is generated in the data dir)"
            )
        if self.port is not None and self.port == self.tls_port:
            raise ConfigurationError("MAILGATE_RELAY_PORT and MAILGATE_RELAY_TLS_PORT must differ")


def _port(key: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigurationError(f"{key}={value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"{key} must be a port number between 1 and 65535 (0: any free port)")
    return port


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``MAILGATE_RELAY_TRUSTED_NETWORKS``: networks separated by commas or spaces (``10.0.0.0/24, ::1``)."""
    out = []
    for item in text.replace(",", " ").split():
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"MAILGATE_RELAY_TRUSTED_NETWORKS: {item!r} is not a network",
                hint="Write networks as 192.168.1.0/24 or single addresses as 192.168.1.10, separated by commas.",
            ) from None
    return tuple(out)


def _numbers_from_env(env: Mapping[str, str], table: Mapping[str, tuple[str, type]]) -> dict[str, object]:
    """The positive numbers of ``table``'s variables (name -> (field, int or float)) that ``env`` sets."""
    values: dict[str, object] = {}
    for key, (attr, kind) in table.items():
        if env.get(key):
            try:
                value = kind(env[key])
            except ValueError:
                raise ConfigurationError(f"{key}={env[key]!r} is not a number") from None
            if value <= 0:
                raise ConfigurationError(f"{key} must be greater than 0")
            values[attr] = value
    return values


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("mailgate-data")
    database_url: str = ""
    secret_key: str = field(default="", repr=False)
    admin_password: str = field(default="", repr=False)
    base_url: str = DEFAULT_BASE_URL
    providers_file: Path | None = None
    context_path: str = DEFAULT_CONTEXT_PATH
    #: Reverse proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed (none by default).
    trusted_proxies: tuple[ProxyNetwork, ...] = ()
    #: Refresh an access token this many seconds before it expires.
    refresh_margin_seconds: float = 300.0
    #: Keep-alive: refresh a grant idle this many days (MAILGATE_KEEPALIVE_DAYS), well inside the providers'
    #: inactivity windows (Microsoft 90 days, Google 6 months).
    keepalive_days: float = 7.0
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    alerts: NotifierSettings = field(default_factory=NotifierSettings)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'mailgate.db').resolve()}"

    @property
    def api_prefix(self) -> str:
        return f"{self.context_path}/v2"

    @property
    def default_redirect_uri(self) -> str:
        return f"{self.base_url.rstrip('/')}{self.api_prefix}/oauth/redirect"

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, listen_port: int | None = None, **overrides: object) -> Settings:
        """Build settings from ``MAILGATE_*`` variables; keyword ``overrides`` (CLI flags) win.

        ``listen_port``: the port ``mailgate serve`` listens on; without ``MAILGATE_BASE_URL`` the base URL
        (and so the default redirect URI) is ``http://localhost:<listen_port>``, not the 8080 of the default.
        """
        values: dict[str, object] = {}
        if listen_port is not None:
            values["base_url"] = local_base_url(listen_port)
        if env.get("MAILGATE_DATA_DIR"):
            values["data_dir"] = Path(env["MAILGATE_DATA_DIR"])
        for key, attr in (
            ("MAILGATE_DATABASE_URL", "database_url"),
            ("MAILGATE_SECRET_KEY", "secret_key"),
            ("MAILGATE_ADMIN_PASSWORD", "admin_password"),
            ("MAILGATE_BASE_URL", "base_url"),
            ("MAILGATE_CONTEXT_PATH", "context_path"),
        ):
            if env.get(key):
                values[attr] = env[key]
        if env.get("MAILGATE_PROVIDERS_FILE"):
            values["providers_file"] = Path(env["MAILGATE_PROVIDERS_FILE"])
        if env.get("MAILGATE_TRUSTED_PROXIES"):
            values["trusted_proxies"] = parse_trusted_proxies(env["MAILGATE_TRUSTED_PROXIES"])
        values.update(_numbers_from_env(env, {"MAILGATE_KEEPALIVE_DAYS": ("keepalive_days", float)}))
        values["outbox"] = OutboxSettings.from_env(env)
        values["http"] = HttpSettings.from_env(env)
        values["relay"] = RelaySettings.from_env(env)
        values["alerts"] = NotifierSettings.from_env(env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        problem = check_endpoint_url(self.base_url)
        if problem and "https" not in problem:
            raise ConfigurationError(f"MAILGATE_BASE_URL {self.base_url!r} {problem}")
        if not self.context_path.startswith("/") or self.context_path.endswith("/"):
            raise ConfigurationError(
                f"MAILGATE_CONTEXT_PATH {self.context_path!r} must start with '/' and not end with one"
            )

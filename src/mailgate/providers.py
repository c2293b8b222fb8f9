"""The provider catalogue: bundled data plus an optional override file, and the rules of its fields.

Pure functions over text; reading the files is left to the caller (``load_catalogue`` takes their text).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError, ValidationError
from .types import Delivery, EmailServerConfig, Grant, ProviderSpec, Security

__all__ = [
    "Catalogue",
    "bundled_catalogue_text",
    "check_endpoint_url",
    "is_loopback_host",
    "load_catalogue",
    "scopes_for",
    "validate_tenant",
]

#: Delegated Microsoft Graph permission to send as the signed-in mailbox (PROVIDERS.md, Graph sendMail).
GRAPH_SEND_SCOPE = "https://graph.microsoft.com/Mail.Send"
#: App-only Microsoft Graph: the application permissions granted to the app (Mail.Send) by admin consent.
GRAPH_APP_SCOPE = "https://graph.microsoft.com/.default"
#: The Gmail API scope that only sends: narrower than https://mail.google.com/ and not a restricted scope.
GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
#: Who consented (id_token ``email``).
_IDENTITY = ("openid", "email")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^(?=.{3,253}$)([a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$")
_TENANT_WORDS = ("organizations", "common", "consumers")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def bundled_catalogue_text() -> str:
    return resources.files("mailgate").joinpath("providers.toml").read_text(encoding="utf-8")


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: str) -> str | None:
    """Why ``url`` cannot be an OAuth endpoint, or None when it can.

    OAuth endpoints must be https (RFC 9700 s.2.6), except on loopback hosts, where the sandbox and tests
    live.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http(s) URL"
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "must use https:// (plain http is allowed only on loopback hosts such as 127.0.0.1)"
    return None


def validate_tenant(tenant: str) -> str | None:
    """Why ``tenant`` is not a Microsoft tenant, or None when it is one.

    Accepted: a directory (tenant) GUID, a verified domain, or organizations / common / consumers.
    """
    if not tenant:
        return "is required for Microsoft: paste the Directory (tenant) ID of your app registration"
    if tenant.lower() in _TENANT_WORDS or _GUID.match(tenant) or _DOMAIN.match(tenant):
        return None
    return (
        "must be a directory (tenant) ID such as 72f988bf-86f1-41af-91ab-2d7cd011db47, a verified domain "
        "such as contoso.onmicrosoft.com, or one of organizations, common, consumers"
    )


def scopes_for(spec: ProviderSpec, grant: Grant | str, delivery: Delivery | str = Delivery.SMTP) -> tuple[str, ...]:
    """The scopes to ask the provider for: they follow the grant and the account's delivery method.

    ``grant``: ``authorization_code`` (a person consents; the refresh grant asks the same scopes) or an
    app-only grant (``client_credentials``, ``service_account``).  ``delivery``: ``smtp`` keeps the
    catalogue's scopes (app-only: its ``app_scopes``, ``.default`` for Microsoft client credentials, the
    delegated scope for a Google service account, which impersonates); ``graph`` asks for Graph ``Mail.Send``
    (a Graph-audience token, which SMTP refuses); ``gmail_api`` for ``gmail.send`` alone.
    """
    app_only = grant not in ("authorization_code", "refresh_token")  # Grant is a StrEnum: equal to its value
    try:
        method = Delivery(delivery)
    except ValueError:
        raise ConfigurationError(
            f"Delivery method {delivery!r} is not known.", hint="Choose smtp, graph or gmail_api for this account."
        ) from None
    match method:
        case Delivery.GRAPH:
            return (GRAPH_APP_SCOPE,) if app_only else (GRAPH_SEND_SCOPE, "offline_access", *_IDENTITY)
        case Delivery.GMAIL_API:
            return (GMAIL_SEND_SCOPE,) if app_only else (GMAIL_SEND_SCOPE, *_IDENTITY)
    if not app_only:
        return spec.scopes
    if not spec.app_scopes:
        raise ConfigurationError(
            f"Provider {spec.name!r} has no app-only scopes.",
            hint="Set app_scopes for it in MAILGATE_PROVIDERS_FILE, or use the authorization code grant.",
        )
    return spec.app_scopes


@dataclass(frozen=True)
class Catalogue:
    providers: Mapping[str, ProviderSpec]

    def get(self, name: str) -> ProviderSpec:
        try:
            return self.providers[name]
        except KeyError:
            raise ValidationError(
                {"provider": f"unknown provider {name!r}; choose one of {', '.join(self.names())}"}
            ) from None

    def names(self) -> list[str]:
        return list(self.providers)

    def limits_of(self, name: str, server: EmailServerConfig | None) -> ProviderSpec | None:
        """The entry whose limits apply: ``name`` (the OAuth page's provider), else the one with the server's host."""
        if name in self.providers:
            return self.providers[name]
        if server is not None:
            return next((p for p in self.providers.values() if p.smtp_host == server.host), None)
        return None


_SPEC_FIELDS = {f.name for f in fields(ProviderSpec)} - {"name"}


def _spec(name: str, data: Mapping[str, Any], base: ProviderSpec | None, origin: str) -> ProviderSpec:
    unknown = set(data) - _SPEC_FIELDS
    if unknown:
        raise ConfigurationError(
            f"{origin}: provider {name!r} has unknown field(s) {', '.join(sorted(unknown))}",
            hint=f"Known fields: {', '.join(sorted(_SPEC_FIELDS))}.",
        )
    values: dict[str, Any] = dict(data)
    for listed in ("scopes", "app_scopes", "app_grants"):
        if listed in values:
            values[listed] = tuple(str(s) for s in values[listed])
    if "authorization_params" in values:
        values["authorization_params"] = tuple((str(k), str(v)) for k, v in values["authorization_params"].items())
    if "smtp_security" in values:
        values["smtp_security"] = Security(values["smtp_security"])
    try:
        if base is not None:
            spec = replace(base, **values)
        else:
            values.setdefault("label", name.capitalize())
            spec = ProviderSpec(name=name, **values)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{origin}: provider {name!r} is incomplete or malformed ({exc})",
            hint="A new provider needs authorization_url, token_url, scopes, smtp_host, smtp_port, smtp_security.",
        ) from exc
    required = ("authorization_url", "token_url")
    for attr in (*required, "graph_url", "gmail_url"):  # the API URLs are optional
        url = getattr(spec, attr)
        problem = check_endpoint_url(url.replace("{tenant}", "t")) if url or attr in required else None
        if problem:
            raise ConfigurationError(f"{origin}: provider {name!r} {attr} {problem}")
    return spec


def load_catalogue(bundled_text: str, override_text: str | None = None, override_origin: str = "") -> Catalogue:
    """Parse the bundled catalogue and apply the override file on top of it, field by field."""
    bundled = tomllib.loads(bundled_text).get("providers", {})
    specs = {name: _spec(name, data, None, "bundled providers.toml") for name, data in bundled.items()}
    if override_text is not None:
        origin = override_origin or "providers file"
        try:
            extra = tomllib.loads(override_text).get("providers", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{origin} is not valid TOML: {exc}") from exc
        for name, data in extra.items():
            if not _NAME.match(name):
                raise ConfigurationError(f"{origin}: provider name {name!r} must be lowercase letters/digits")
            specs[name] = _spec(name, data, specs.get(name), origin)
    return Catalogue(providers=specs)

"""The Email server page's settings: a save merged into what is stored and checked whole, and the
defaults a provider gives.  No database here: :class:`~mailgate.configure.ConfigService` stores them."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from .errors import ValidationError
from .smtp.tls import CaFileError, client_context
from .types import Authentication, Delivery, EmailServerConfig, ProviderSpec, Security

__all__ = ["EmailServerUpdate", "check_ca_file", "merged", "server_defaults", "validate_server"]

_HOST = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9_](?:[a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9_](?:[a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?)*\.?$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$|^[^@\s]+@localhost$")


@dataclass(frozen=True)
class EmailServerUpdate:
    """A save of the Email server page, whole (the page) or partial (``PUT /v2/email/server``).

    A field left ``None`` keeps its stored value (or the provider's default when nothing is stored yet);
    ``""`` clears an optional one (username, sender, ca_file).  ``password`` is write-only: ``None`` or ``""``
    keeps the stored one, and it is dropped when authentication is not ``password``.
    """

    host: str | None = None
    port: int | None = None
    security: str | None = None
    authentication: str | None = None
    username: str | None = None
    sender: str | None = None
    password: str | None = None
    ca_file: str | None = None
    #: ``smtp``, ``graph`` or ``gmail_api``; the HTTP ones need no host, port or security.
    delivery: str | None = None


def server_defaults(spec: ProviderSpec | None) -> EmailServerConfig:
    if spec is None:
        return EmailServerConfig(
            host="", port=587, security=Security.STARTTLS, username="", sender="", authentication=Authentication.OAUTH
        )
    return EmailServerConfig(
        host=spec.smtp_host,
        port=spec.smtp_port,
        security=spec.smtp_security,
        username="",
        sender="",
        authentication=Authentication.OAUTH,
    )


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return bool(_HOST.match(host))


def merged(given: str | None, stored: str) -> str:
    """A text field of a partial update: the stored value when left out (None), else what was given."""
    return (stored if given is None else given).strip()


def validate_server(
    update: EmailServerUpdate, current: EmailServerConfig, ca_problem: str | None, spec: ProviderSpec | None = None
) -> EmailServerConfig:
    """``update`` merged into ``current`` and checked whole (ValidationError naming each bad field);
    ``ca_problem``: what :func:`check_ca_file` found wrong with the CA file, if anything; ``spec``: the
    account's provider, which decides whether an HTTP delivery is possible."""
    errors: dict[str, str] = {}
    host = merged(update.host, current.host)
    port = current.port if update.port is None else update.port
    try:
        delivery = Delivery(merged(update.delivery, current.delivery.value))
    except ValueError:
        errors["delivery"] = "must be one of smtp, graph, gmail_api"
        delivery = Delivery.SMTP
    if delivery.over_http:
        problem = _http_delivery_problem(delivery, spec)
        if problem:
            errors["delivery"] = problem
        if not 1 <= port <= 65535:  # host, port and security are SMTP's: not required, kept for a switch back
            port = current.port
    if not host:
        if not delivery.over_http:
            errors["host"] = "is required (smtp.gmail.com for Google, smtp.office365.com for Microsoft)"
    elif not _valid_host(host):
        errors["host"] = "is not a valid host name or IP address"
    if not 1 <= port <= 65535 and not delivery.over_http:
        errors["port"] = "must be between 1 and 65535 (587 for STARTTLS, 465 for SSL/TLS)"
    try:
        security = Security(merged(update.security, current.security.value))
    except ValueError:
        errors["security"] = "must be one of starttls, ssl, none"
        security = Security.STARTTLS
    try:
        authentication = Authentication(merged(update.authentication, current.authentication.value))
    except ValueError:
        errors["authentication"] = "must be one of none, password, oauth"
        authentication = Authentication.NONE
    username, sender = merged(update.username, current.username), merged(update.sender, current.sender)
    for name, value in (("username", username), ("sender", sender)):
        if len(value) > 320:
            errors[name] = "is too long (at most 320 characters)"
        elif any(ord(c) < 32 for c in value):
            errors[name] = "must not contain line breaks or control characters"
    if sender and "sender" not in errors and (not _EMAIL.match(sender) or parseaddr(sender)[1] != sender):
        errors["sender"] = "must be an email address such as reports@example.com"
    password = update.password or current.password
    if authentication is Authentication.PASSWORD:
        if not username and "username" not in errors:
            errors["username"] = "is required for password authentication"
        if not password:
            errors["password"] = "is required for password authentication"
    if delivery.over_http and authentication is not Authentication.OAUTH and "delivery" not in errors:
        errors["authentication"] = f"must be oauth for delivery {delivery.value} (the API takes an OAuth token)"
    if authentication is Authentication.OAUTH and security is Security.NONE and not delivery.over_http:
        errors["security"] = "OAuth tokens must not travel unencrypted: choose starttls or ssl"
    ca_file = merged(update.ca_file, current.ca_file)
    if ca_problem:
        errors["ca_file"] = ca_problem
    if errors:
        raise ValidationError(errors)
    return EmailServerConfig(
        host=host,
        port=port,
        security=security,
        username=username,
        sender=sender,
        authentication=authentication,
        password=password if authentication is Authentication.PASSWORD else "",
        ca_file=ca_file,
        delivery=delivery,
    )


def _http_delivery_problem(delivery: Delivery, spec: ProviderSpec | None) -> str | None:
    """Why the account's provider cannot deliver with ``delivery``, or None."""
    if spec is None:
        return "needs an OAuth provider first: save the OAuth page (Microsoft for graph, Google for gmail_api)"
    if delivery is Delivery.GRAPH and not spec.graph_url:
        return f"graph needs a Microsoft provider (one with a graph_url); the OAuth provider is {spec.name}"
    if delivery is Delivery.GMAIL_API and not spec.gmail_url:
        return f"gmail_api needs a Google provider (one with a gmail_url); the OAuth provider is {spec.name}"
    return None


def check_ca_file(ca_file: str) -> str | None:
    """What is wrong with ``ca_file`` ("" is fine: the default trust store), as loaded when connecting.

    Blocking (file I/O): run it in a thread.
    """
    if not ca_file:
        return None
    if not Path(ca_file).is_absolute():
        return "must be an absolute path on the mailgate server"
    try:
        client_context(ca_file)
    except CaFileError as exc:
        return str(exc)
    return None

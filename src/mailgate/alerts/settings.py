"""Where alerts go: a webhook URL, email addresses, and a fallback SMTP server for the email alerts.

Validated whole before anything is written (422 naming each field); the fallback server's password is
write-only (encrypted with the SecretBox, never returned); every change is in the audit log (field names only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..audit import AuditLog, changed_fields
from ..configure import EmailServerUpdate, validate_server
from ..errors import ValidationError
from ..providers import check_endpoint_url
from ..store import Database, SecretBox
from ..store.models import AlertSettingsRow
from ..types import Authentication, EmailServerConfig, Security

__all__ = ["AlertConfig", "AlertSettings", "AlertSettingsUpdate", "FallbackSmtp", "FallbackSmtpUpdate"]

_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")
#: Addresses one alert goes to at most.
MAX_ADDRESSES = 20


@dataclass(frozen=True)
class FallbackSmtp:
    """The SMTP server email alerts go through when no account is healthy.  ``password`` stays in memory."""

    host: str
    port: int
    security: str
    username: str
    sender: str
    password: str = field(default="", repr=False)

    def server(self) -> EmailServerConfig:
        """As an Email server configuration (password authentication when a username is set)."""
        return EmailServerConfig(
            host=self.host,
            port=self.port,
            security=Security(self.security),
            username=self.username,
            sender=self.sender,
            authentication=Authentication.PASSWORD if self.username else Authentication.NONE,
            password=self.password,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "username": self.username,
            "sender": self.sender,
            "password_set": bool(self.password),
        }


@dataclass(frozen=True)
class AlertSettings:
    """The stored settings.  ``to_dict`` is what the API and the page show: no secret."""

    webhook_url: str = ""
    email_to: tuple[str, ...] = ()
    fallback_smtp: FallbackSmtp | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "webhook_url": self.webhook_url,
            "email_to": list(self.email_to),
            "fallback_smtp": self.fallback_smtp.to_dict() if self.fallback_smtp else None,
        }


@dataclass(frozen=True)
class FallbackSmtpUpdate:
    """A fallback server as sent; ``None`` keeps the stored value, ``password`` None or "" keeps the stored one."""

    host: str | None = None
    port: int | None = None
    security: str | None = None
    username: str | None = None
    sender: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class AlertSettingsUpdate:
    """A save (``PUT /v2/alerts`` or the page): ``None`` keeps a field; ``""`` / ``[]`` clears it;
    ``clear_fallback`` removes the fallback server."""

    webhook_url: str | None = None
    email_to: list[str] | None = None
    fallback_smtp: FallbackSmtpUpdate | None = None
    clear_fallback: bool = False


def split_addresses(text: str) -> list[str]:
    """``a@x, b@y`` (commas, semicolons, spaces or lines) as a list."""
    return [part for part in re.split(r"[\s,;]+", text) if part]


class AlertConfig:
    """Reads and saves the alert settings."""

    def __init__(self, db: Database, box: SecretBox, audit: AuditLog) -> None:
        self._db, self._box, self._audit = db, box, audit

    def __repr__(self) -> str:
        return f"AlertConfig({self._db!r})"

    async def get(self) -> AlertSettings:
        async with self._db.session() as session:
            row = await session.get(AlertSettingsRow, 1)
        return self._settings(row)

    def _settings(self, row: AlertSettingsRow | None) -> AlertSettings:
        if row is None:
            return AlertSettings()
        fallback = None
        if row.smtp_host:
            fallback = FallbackSmtp(
                host=row.smtp_host,
                port=row.smtp_port,
                security=row.smtp_security,
                username=row.smtp_username,
                sender=row.smtp_sender,
                password=self._box.decrypt(row.smtp_password_enc),
            )
        return AlertSettings(row.webhook_url, tuple(split_addresses(row.email_to)), fallback)

    async def save(self, update: AlertSettingsUpdate) -> AlertSettings:
        """Merge ``update`` into the stored settings, check the result whole, then store it (or nothing)."""
        current = await self.get()
        new = _validated(update, current)
        async with self._db.session() as session:
            row = await session.get(AlertSettingsRow, 1)
            if row is None:
                row = AlertSettingsRow(id=1)
                session.add(row)
            row.webhook_url = new.webhook_url
            row.email_to = ", ".join(new.email_to)
            smtp = new.fallback_smtp or FallbackSmtp("", 587, "starttls", "", "")
            row.smtp_host, row.smtp_port, row.smtp_security = smtp.host, smtp.port, smtp.security
            row.smtp_username, row.smtp_sender = smtp.username, smtp.sender
            row.smtp_password_enc = self._box.encrypt(smtp.password)
        fields = changed_fields(_comparable(current), _comparable(new))
        if fields:
            await self._audit.record("alerts.changed", fields=fields)
        return new


def _comparable(settings: AlertSettings) -> dict[str, object]:
    """The settings flattened, the password included (compared, never recorded: only names are)."""
    values: dict[str, object] = {"webhook_url": settings.webhook_url, "email_to": settings.email_to}
    smtp = settings.fallback_smtp
    for name in ("host", "port", "security", "username", "sender", "password"):
        values[f"fallback_smtp.{name}"] = getattr(smtp, name) if smtp else None
    return values


def _validated(update: AlertSettingsUpdate, current: AlertSettings) -> AlertSettings:
    errors: dict[str, str] = {}
    url = current.webhook_url if update.webhook_url is None else update.webhook_url.strip()
    if url:
        problem = check_endpoint_url(url)
        if len(url) > 2048:
            errors["webhook_url"] = "is too long (at most 2048 characters)"
        elif problem:
            errors["webhook_url"] = problem
    addresses = list(current.email_to) if update.email_to is None else [a.strip() for a in update.email_to]
    addresses = list(dict.fromkeys(a for a in addresses if a))
    bad = [a for a in addresses if not _ADDRESS.match(a) or len(a) > 320]
    if bad:
        errors["email_to"] = f"{', '.join(map(repr, bad))}: each must be an email address such as ops@example.com"
    elif len(addresses) > MAX_ADDRESSES:
        errors["email_to"] = f"at most {MAX_ADDRESSES} addresses"
    fallback = None if update.clear_fallback else current.fallback_smtp
    if update.fallback_smtp is not None and not update.clear_fallback:
        fallback, smtp_errors = _fallback(update.fallback_smtp, fallback)
        errors.update(smtp_errors)
    if errors:
        raise ValidationError(errors)
    return AlertSettings(url, tuple(addresses), fallback)


def _fallback(update: FallbackSmtpUpdate, current: FallbackSmtp | None) -> tuple[FallbackSmtp | None, dict[str, str]]:
    base = current.server() if current else EmailServerConfig("", 587, Security.STARTTLS, "", "", Authentication.NONE)
    username = base.username if update.username is None else update.username.strip()
    try:
        server = validate_server(
            EmailServerUpdate(
                host=update.host,
                port=update.port,
                security=update.security,
                authentication=(Authentication.PASSWORD if username else Authentication.NONE).value,
                username=username,
                sender=update.sender,
                password=update.password or None,
            ),
            base,
            None,
        )
    except ValidationError as exc:
        return None, {f"fallback_smtp.{name}": text for name, text in exc.errors.items()}
    sender = server.sender or (server.username if _ADDRESS.match(server.username) else "")
    if not sender:
        return None, {
            "fallback_smtp.sender": "is required: the From address of alert emails, e.g. mailgate@example.com"
        }
    smtp = FallbackSmtp(server.host, server.port, server.security.value, server.username, sender, server.password)
    return smtp, {}

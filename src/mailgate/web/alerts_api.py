"""``/v2/alerts`` (where alerts go, and a test alert) and ``/v2/audit`` (who changed what)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..alerts import AlertSettingsUpdate, FallbackSmtpUpdate
from ..alerts.settings import split_addresses
from ..audit import MAX_PAGE
from .deps import AdminDep, ServicesDep

__all__ = ["AlertsIn", "FallbackSmtpIn", "router"]

router = APIRouter(tags=["alerts"])

_SECRET = "Write-only. Left out, null or empty: the stored one is kept."


class FallbackSmtpIn(BaseModel):
    """The SMTP server email alerts go through when no account is healthy.  Fields left out are kept."""

    model_config = ConfigDict(extra="forbid", str_max_length=4096)
    host: str | None = Field(default=None, description="SMTP host.")
    port: int | None = Field(default=None, description="587 (starttls), 465 (ssl) or 25 (none).")
    security: str | None = Field(default=None, description="starttls, ssl or none.")
    username: str | None = Field(default=None, description="Sign in with this user and the password (optional).")
    password: str | None = Field(default=None, description=_SECRET)
    sender: str | None = Field(default=None, description="From address of alert emails (default: the username).")


class AlertsIn(BaseModel):
    """A partial update: only the fields sent change; ``fallback_smtp: null`` removes the fallback server."""

    model_config = ConfigDict(extra="forbid", str_max_length=4096)
    webhook_url: str | None = Field(
        default=None, description="JSON POSTs go here: https://, or http:// on a loopback host. Empty: none."
    )
    email_to: list[str] | None = Field(
        default=None, description="Addresses alert emails go to (a list, or one string separated by commas)."
    )
    fallback_smtp: FallbackSmtpIn | None = None

    @field_validator("email_to", mode="before")
    @classmethod
    def _one_string(cls, value: object) -> object:
        return split_addresses(value) if isinstance(value, str) else value


def _update(body: AlertsIn) -> AlertSettingsUpdate:
    sent = body.model_fields_set
    email_to = (body.email_to or []) if "email_to" in sent else None
    smtp = body.fallback_smtp
    fallback = None
    if smtp is not None:
        given = smtp.model_fields_set
        fallback = FallbackSmtpUpdate(
            **{name: ("" if getattr(smtp, name) is None else getattr(smtp, name)) for name in given if name != "port"},
            port=(smtp.port or 0) if "port" in given else None,
        )
    return AlertSettingsUpdate(
        webhook_url=(body.webhook_url or "") if "webhook_url" in sent else None,
        email_to=email_to,
        fallback_smtp=fallback,
        clear_fallback="fallback_smtp" in sent and smtp is None,
    )


@router.get("/alerts")
async def get_alerts(_: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Where alerts go (the fallback server's password only as ``password_set``), and the latest notifications."""
    settings = await services.alerts.get()
    recent = await services.notifier.recent()
    return {**settings.to_dict(), "recent": [n.to_dict() for n in recent]}


@router.put("/alerts")
async def put_alerts(body: AlertsIn, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Change where alerts go.  Validated whole first: a 422 names each bad field and changes nothing."""
    return (await services.alerts.save(_update(body))).to_dict()


@router.post("/alerts/test")
async def test_alerts(_: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Send a test alert now on each configured channel; answers, per channel, ``sent``, ``failed`` (and why)
    or ``not_configured``."""
    return await services.notifier.send_test()


@router.get("/audit")
async def get_audit(
    _: AdminDep,
    services: ServicesDep,
    limit: int = Query(50, ge=1, le=MAX_PAGE, description="Entries per page."),
    before: int | None = Query(None, ge=1, description="Only entries older than this id (the next page)."),
) -> dict[str, Any]:
    """The audit log, newest first.  ``next_before``: pass it as ``before`` for the next page (null: the end)."""
    entries = await services.audit.list(limit=limit, before=before)
    return {
        "items": [e.to_dict() for e in entries],
        "next_before": entries[-1].id if len(entries) == limit else None,
    }

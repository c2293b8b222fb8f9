"""The **Alerts** page (where alerts go, "Send test alert", the latest notifications) and the **Audit log** page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from ..alerts import AlertSettingsUpdate, FallbackSmtpUpdate
from ..alerts.settings import split_addresses
from ..errors import ValidationError
from .deps import ServicesDep
from .pages import ALERTS_PAGE, AUDIT_PAGE, CsrfDep, PageUser, page_url, redirect_to, render
from .session import Flash

__all__ = ["AUDIT_PAGE_SIZE", "router"]

router = APIRouter(include_in_schema=False)

#: Entries per page of the Audit log page.
AUDIT_PAGE_SIZE = 50
_SMTP = ("host", "port", "security", "username", "sender")
_LABELS = {
    "webhook_url": "Webhook URL",
    "email_to": "Email to",
    **{f"fallback_smtp.{name}": f"Fallback SMTP {name}" for name in (*_SMTP, "password")},
}


def _values(settings: dict[str, Any]) -> dict[str, str]:
    smtp = settings["fallback_smtp"] or {}
    values = {"webhook_url": settings["webhook_url"], "email_to": ", ".join(settings["email_to"])}
    for name in _SMTP:
        values[f"smtp_{name}"] = str(smtp.get(name, "")) if smtp else ("587" if name == "port" else "")
    values.setdefault("smtp_security", "starttls")
    return values


async def _page(
    request: Request,
    services: ServicesDep,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    test: dict[str, dict[str, str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = (await services.alerts.get()).to_dict()
    context: dict[str, Any] = {
        "title": "Alerts",
        "page": "alerts",
        "values": values or _values(settings),
        "password_set": bool(settings["fallback_smtp"] and settings["fallback_smtp"]["password_set"]),
        # The fields are smtp_*; the service names them fallback_smtp.* (as the API does).
        "errors": {k.replace("fallback_smtp.", "smtp_"): v for k, v in (errors or {}).items()},
        "labels": {k.replace("fallback_smtp.", "smtp_"): v for k, v in _LABELS.items()},
        "test": test,
        "recent": await services.notifier.recent(),
        "notifier_error": services.notifier.last_error,
    }
    return render(request, "alerts.html", context, status_code=status_code)


@router.get(ALERTS_PAGE, response_class=HTMLResponse)
async def alerts_page(request: Request, _user: PageUser, services: ServicesDep) -> Response:
    """Where alerts go (never the fallback server's password), and the latest notifications."""
    return await _page(request, services)


@router.post(ALERTS_PAGE, response_class=HTMLResponse)
async def alerts_action(request: Request, _user: PageUser, _csrf: CsrfDep, services: ServicesDep) -> Response:
    """Save the form; ``action=test`` then sends a test alert and shows what happened on each channel."""
    form = await request.form()
    values = {
        name: str(form.get(name, "")).strip()[:4096]
        for name in ("webhook_url", "email_to", *(f"smtp_{n}" for n in _SMTP))
    }
    password = str(form.get("smtp_password", ""))[:4096]
    errors: dict[str, str] = {}
    port: int | None = None
    if values["smtp_host"]:
        try:
            port = int(values["smtp_port"])
        except ValueError:
            errors["fallback_smtp.port"] = "must be a number between 1 and 65535 (587 for STARTTLS, 465 for SSL/TLS)"
    fallback = None
    if values["smtp_host"]:
        fallback = FallbackSmtpUpdate(
            host=values["smtp_host"],
            port=port or 0,
            security=values["smtp_security"],
            username=values["smtp_username"],
            sender=values["smtp_sender"],
            password=password or None,
        )
    update = AlertSettingsUpdate(
        webhook_url=values["webhook_url"],
        email_to=split_addresses(values["email_to"]),
        fallback_smtp=fallback,
        clear_fallback=not values["smtp_host"],
    )
    if not errors:
        try:
            await services.alerts.save(update)
        except ValidationError as exc:
            errors = exc.errors
    if errors:
        return await _page(request, services, values=values, errors=errors, status_code=422)
    if str(form.get("action", "save")) == "test":
        return await _page(request, services, test=await services.notifier.send_test())
    return redirect_to(request, ALERTS_PAGE, Flash("ok", "Saved."))


@router.get(AUDIT_PAGE, response_class=HTMLResponse)
async def audit_page(
    request: Request,
    _user: PageUser,
    services: ServicesDep,
    before: int | None = Query(None, ge=1),
) -> Response:
    """Who changed what, newest first, a page at a time ("Older entries")."""
    entries = await services.audit.list(limit=AUDIT_PAGE_SIZE, before=before)
    older = entries[-1].id if len(entries) == AUDIT_PAGE_SIZE else None
    context = {
        "title": "Audit log",
        "page": "audit",
        "entries": entries,
        "older_url": f"{page_url(request, AUDIT_PAGE)}?before={older}" if older else "",
        "newest_url": page_url(request, AUDIT_PAGE) if before else "",
    }
    return render(request, "audit.html", context)

"""The **Relay** page: where applications that only speak SMTP send (host, port, STARTTLS, the certificate's
fingerprint), and their credentials: add (the password is shown once, in the answer), list, remove."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..errors import MailgateError, ValidationError
from ..relay import DEFAULT_ACCOUNT, NewRelayUser, load_certificate
from .deps import ServicesDep
from .pages import RELAY_PAGE, CsrfDep, PageUser, redirect_to, render
from .session import Flash

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


async def _page(
    request: Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    created: NewRelayUser | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    services = request.app.state.services
    relay = services.settings.relay
    try:
        certificate = load_certificate(relay, services.settings.data_dir, create=False)
        certificate_problem = ""
    except MailgateError as exc:
        certificate, certificate_problem = None, f"{exc.message} {exc.hint}".strip()
    users = await services.relay_users.list()
    context: dict[str, Any] = {
        "title": "Relay",
        "page": "relay",
        "relay": relay,
        "certificate": certificate,
        "certificate_problem": certificate_problem,
        "trusted": ", ".join(str(n) for n in relay.trusted_networks),
        "users": users,
        "values": values or {"name": "", "account": DEFAULT_ACCOUNT, "senders": ""},
        "errors": errors or {},
        "created": created,
        "metrics": services.relay_metrics,
    }
    return render(request, "relay.html", context, status_code=status_code)


@router.get(RELAY_PAGE, response_class=HTMLResponse)
async def relay_page(request: Request, _user: PageUser) -> Response:
    """The relay's settings for applications, and its users."""
    return await _page(request)


@router.post(RELAY_PAGE, response_class=HTMLResponse)
async def relay_action(request: Request, _user: PageUser, _csrf: CsrfDep, services: ServicesDep) -> Response:
    """``action=add``: create a user and show its password once; ``action=remove``: delete ``name``."""
    form = await request.form()
    action = str(form.get("action", "add"))
    if action == "remove":
        name = str(form.get("name", ""))[:64]
        try:
            await services.relay_users.remove(name)
        except MailgateError as exc:
            return redirect_to(request, RELAY_PAGE, Flash("error", exc.message, exc.hint))
        return redirect_to(request, RELAY_PAGE, Flash("ok", f"Relay user {name} removed: it can no longer log in."))
    values = {key: str(form.get(key, "")).strip()[:4096] for key in ("name", "account", "senders")}
    senders = [s for s in values["senders"].replace(",", " ").split() if s]
    try:
        created = await services.relay_users.add(values["name"], account=values["account"], senders=senders)
    except ValidationError as exc:
        return await _page(request, values=values, errors=exc.errors, status_code=422)
    # Rendered, not redirected: the password must not travel in a cookie or a URL.
    return await _page(request, created=created)

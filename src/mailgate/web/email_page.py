"""The **Email server** page: host, port, security, sender, username, authentication; Authorize (OAuth
consent), Test connection and Send test email.

One form, several buttons (``action``): every action saves what is on the page first, so that Authorize and
the tests always use what the administrator sees.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..app import Services
from ..configure import EmailServerUpdate, OAuthView
from ..errors import MailgateError, ValidationError
from ..smtp import Step
from ..store.repository import DEFAULT_ACCOUNT
from ..types import Authentication, EmailServerConfig
from .deps import ServicesDep
from .oauth_page import token_status_text
from .pages import ACCOUNTS_PAGE, EMAIL_PAGE, CsrfDep, PageUser, account_pages, page_url, redirect_to, render
from .session import Flash

__all__ = ["router", "sender_warning"]

router = APIRouter(include_in_schema=False)

_FIELDS = ("delivery", "host", "port", "security", "sender", "username", "authentication", "ca_file")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_STEP_LABELS = {
    "connect": "Connect",
    "tls": "TLS",
    "starttls": "TLS",
    "ehlo": "EHLO",
    "auth": "AUTH",
    "send": "Send",
    "token": "Token",
    "permission": "Permission",
}


def sender_warning(sender: str, username: str, view: OAuthView) -> str:
    """Why sending as ``sender`` may fail with the consented account, or "" when it matches."""
    account = view.account.strip().lower()
    if not view.refresh_token_set or not account:
        return ""
    problems = []
    if sender and sender.strip().lower() != account:
        problems.append(f"the sender {sender} differs from the account that authorized ({view.account})")
    if username and username.strip().lower() != account:
        problems.append(f"the username {username} differs from the account that authorized ({view.account})")
    if not problems:
        return ""
    return (
        "Warning: "
        + " and ".join(problems)
        + ". Gmail rewrites the From address unless it is a verified 'Send mail as' alias of the account; "
        "Microsoft 365 refuses the message unless the account has Send As permission on the sender. "
        "Use the same mailbox, or Authorize again signed in as the sender."
    )


def _values(server: EmailServerConfig, senders: list[str]) -> dict[str, str]:
    return {
        "senders": "\n".join(senders),
        "delivery": server.delivery.value,
        "host": server.host,
        "port": str(server.port),
        "security": server.security.value,
        "sender": server.sender,
        "username": server.username,
        "authentication": server.authentication.value,
        "ca_file": server.ca_file,
        "send_to": "",
    }


async def _page(
    request: Request,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    *,
    steps: list[Step] | None = None,
    tested: str = "",
    status_code: int = 200,
    account: str = DEFAULT_ACCOUNT,
) -> HTMLResponse:
    services = request.app.state.services
    server = await services.config.email_server(account)
    view: OAuthView = await services.config.oauth_view(account)
    values = values or _values(server, await services.accounts.senders(account))
    oauth_path, email_path = account_pages(account)
    status_class, status_text = token_status_text(view, on_email_page=True)
    provider = services.catalogue.providers.get(view.provider)
    return render(
        request,
        "email_server.html",
        {
            "title": "Email server",
            "page": "email" if account == DEFAULT_ACCOUNT else "accounts",
            "values": values,
            "errors": errors or {},
            "password_set": bool(server.password),
            "view": view,
            "provider_label": provider.label if provider else "",
            "status_class": status_class,
            "status_text": status_text,
            "saved_delivery": server.delivery.value,
            # The stored consent was given for another delivery's scopes (see ConfigService._delivery_changed).
            "delivery_reauth": view.refresh_token_set and values["delivery"] != server.delivery.value,
            "warning": sender_warning(values["sender"], values["username"], view),
            "steps": [
                {"name": _STEP_LABELS.get(s.name, s.name.upper()), "ok": s.ok, "detail": s.detail, "hint": s.hint}
                for s in steps or []
            ],
            "tested": tested,
            "tests_ok": bool(steps) and all(s.ok for s in steps or []),
            "oauth_page": page_url(request, oauth_path),
            "self_url": page_url(request, email_path),
            "account_name": "" if account == DEFAULT_ACCOUNT else account,
        },
        status_code=status_code,
    )


@router.get(EMAIL_PAGE, response_class=HTMLResponse)
async def email_page(request: Request, _user: PageUser) -> Response:
    """Show the saved Email server settings (never the password)."""
    return await _page(request)


@router.get(ACCOUNTS_PAGE + "/{account}/email-server", response_class=HTMLResponse)
async def account_email_page(request: Request, account: str, _user: PageUser, services: ServicesDep) -> Response:
    """The Email server page of another account (saving it creates the account)."""
    return await _page(request, account=services.accounts.check_name(account))


@router.post(EMAIL_PAGE, response_class=HTMLResponse)
async def email_action(request: Request, _user: PageUser, _csrf: CsrfDep, services: ServicesDep) -> Response:
    """Save the form, then do what the pressed button asks: save, authorize, test or send."""
    return await _act(request, services, DEFAULT_ACCOUNT)


@router.post(ACCOUNTS_PAGE + "/{account}/email-server", response_class=HTMLResponse)
async def account_email_action(
    request: Request, account: str, _user: PageUser, _csrf: CsrfDep, services: ServicesDep
) -> Response:
    """The same for another account (saving creates it)."""
    return await _act(request, services, services.accounts.check_name(account))


async def _act(request: Request, services: Services, account: str) -> Response:
    form = await request.form()
    values = {name: str(form.get(name, "")).strip()[:4096] for name in (*_FIELDS, "send_to", "senders")}
    senders = [line.strip() for line in values["senders"].splitlines() if line.strip()]
    action = str(form.get("action", "save"))
    password = str(form.get("password", ""))[:4096]
    errors: dict[str, str] = {}
    port: int | None = None
    try:
        port = int(values["port"])
    except ValueError:
        if values["delivery"] in ("", "smtp"):  # the HTTP deliveries need no port
            errors["port"] = "must be a number between 1 and 65535 (587 for STARTTLS, 465 for SSL/TLS)"
            port = 0
    if action == "send" and not _ADDRESS.match(values["send_to"]):
        errors["send_to"] = "must be an email address to send the test message to"
    try:
        await services.accounts.save_email_server(
            account,
            EmailServerUpdate(
                host=values["host"],
                port=port,
                security=values["security"],
                authentication=values["authentication"],
                username=values["username"],
                sender=values["sender"],
                password=password or None,
                ca_file=values["ca_file"],
                delivery=values["delivery"] or None,
            ),
            senders if "senders" in form else None,
        )
    except ValidationError as exc:
        errors = {**exc.errors, **errors}
    except MailgateError as exc:
        errors.setdefault("form", f"{exc.message} {exc.hint}".strip())
    if errors:
        return await _page(request, values, errors, status_code=422, account=account)
    if action == "authorize":
        return await _authorize(request, values, account)
    if action in ("test", "send"):
        send_to = values["send_to"] if action == "send" else None
        try:
            steps = await services.mailer.test(send_to=send_to, account=account)
        except MailgateError as exc:
            steps = [Step("connect", False, exc.message, exc.hint)]
        return await _page(request, values, steps=steps, tested=action, account=account)
    return redirect_to(request, account_pages(account)[1], Flash("ok", "Saved."))


async def _authorize(request: Request, values: dict[str, str], account: str) -> Response:
    """Send the browser through the consent flow (``/v2/oauth/authorize``), back to this page afterwards."""
    services = request.app.state.services
    oauth_path, email_path = account_pages(account)
    if values["authentication"] != Authentication.OAUTH.value:
        errors = {"authentication": "choose OAuth to authorize a mailbox"}
        return await _page(request, values, errors, status_code=422, account=account)
    view: OAuthView = await services.config.oauth_view(account)
    if not view.client_id:
        return redirect_to(
            request,
            oauth_path,
            Flash(
                "error",
                "OAuth is not configured yet.",
                "Choose the OAuth Provider, enter the Client ID and Client Secret, click Save, then Authorize "
                "on the Email server page.",
            ),
        )
    back = quote(page_url(request, email_path), safe="/")
    start = "" if account == DEFAULT_ACCOUNT else f"/accounts/{quote(account, safe='')}"
    target = f"{services.settings.api_prefix}{start}/oauth/authorize?return_to={back}"
    return RedirectResponse(target, status_code=303)

"""The **OAuth** page (Configuration > Server Parameters > Additional Parameters > OAuth), as the setup guide
describes it: provider, tenant, greyed-out URLs, client ID and secret, redirect URI, refresh token, Save."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from ..app import Services
from ..configure import OAuthConfigUpdate, OAuthView
from ..errors import MailgateError, ValidationError
from ..oauth.identities import GRANT_LABELS
from ..store.repository import DEFAULT_ACCOUNT
from ..types import Grant, TokenStatus
from .deps import ServicesDep
from .oauth_api import public_catalogue
from .pages import ACCOUNTS_PAGE, OAUTH_PAGE, CsrfDep, PageUser, account_pages, redirect_to, render
from .session import Flash

__all__ = ["router", "token_status_text"]

router = APIRouter(include_in_schema=False)

_MAX_UPLOAD = 64 * 1024
#: What the Refresh token field shows when a token is stored: never the token, not even a part of it.
MASK = "\u2022" * 24


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def token_status_text(view: OAuthView, *, on_email_page: bool = False) -> tuple[str, str]:
    """(css class, sentence) describing the refresh token's state, and what to do about it."""
    if view.grant != Grant.AUTHORIZATION_CODE:
        valid = view.token_status is TokenStatus.VALID
        return ("ok" if valid else "error" if view.token_status_reason else "muted"), app_status_text(view)
    where = "" if on_email_page else "On the Email server page, "
    if view.token_status is TokenStatus.VALID:
        refreshed = _when(view.last_refreshed_at)
        text = "Valid" + (f", last refreshed at {refreshed}" if refreshed else "") + "."
        return "ok", text
    if view.token_status is TokenStatus.REAUTHORIZATION_REQUIRED:
        reason = view.token_status_reason.rstrip(". ") or "the provider no longer accepts the refresh token"
        action = f"{where}click Authorize to grant consent again."
        return "error", f"Re-authorization needed: {reason}. {action[0].upper()}{action[1:]}"
    action = f"{where}choose OAuth authentication and click Authorize."
    return "muted", f"Not yet authorized: {action[0].lower()}{action[1:]}"


def app_status_text(view: OAuthView) -> str:
    """The token status of an app-only grant: there is no consent, a token is fetched when needed."""
    if view.token_status is TokenStatus.VALID:
        refreshed = _when(view.last_refreshed_at)
        return "Valid" + (f", access token obtained at {refreshed}" if refreshed else "") + "."
    reason = f" Last attempt: {view.token_status_reason}" if view.token_status_reason else ""
    return (
        "No access token yet: no consent is needed, mailgate gets one by the grant when it sends; "
        f"use Test connection on the Email server page to try now.{reason}"
    )


def _page(
    request: Request,
    view: OAuthView,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    retype_secret: bool = False,
    account: str = DEFAULT_ACCOUNT,
    retype_files: bool = False,
) -> HTMLResponse:
    services = request.app.state.services
    oauth_path, email_path = account_pages(account)
    catalogue = public_catalogue(request.app.state.services.catalogue)
    values = values or {
        "provider": view.provider or catalogue[0]["name"],
        "tenant": view.tenant,
        "client_id": view.client_id,
        "redirect_uri": view.redirect_uri,
        "client_secret_expires_on": view.client_secret_expires_on.isoformat() if view.client_secret_expires_on else "",
        "grant": view.grant,
        "mailbox": view.mailbox,
    }
    spec = services.catalogue.providers.get(values["provider"])
    offered = ["authorization_code", *(spec.app_grants if spec else ())]
    status_class, status_text = token_status_text(view)
    return render(
        request,
        "oauth.html",
        {
            "title": "OAuth",
            "page": "oauth" if account == DEFAULT_ACCOUNT else "accounts",
            "providers": catalogue,
            "values": values,
            "errors": errors or {},
            "requires_tenant": bool(spec and spec.requires_tenant),
            "authorization_url": spec.authorization_url_for(values["tenant"]) if spec else "",
            "token_url": spec.token_url_for(values["tenant"]) if spec else "",
            # The secret is "set" only for the saved provider: switching provider needs the new app's secret.
            "secret_set": view.client_secret_set,
            "saved_provider": view.provider,
            "retype_secret": retype_secret,
            "default_redirect_uri": services.config.default_redirect_uri,
            "view": view,
            "mask": MASK if view.refresh_token_set else "",
            "status_class": status_class,
            "status_text": status_text,
            "authorized_at": _when(view.authorized_at),
            "last_used_at": _when(view.last_used_at),
            "refresh_token_ends": _when(view.refresh_token_expires_at),
            "email_page": services.settings.context_path + email_path,
            "self_url": services.settings.context_path + oauth_path,
            "account_name": "" if account == DEFAULT_ACCOUNT else account,
            "grant_labels": [(grant.value, label) for grant, label in GRANT_LABELS.items()],
            "offered_grants": offered,
            "certificate_expires": _when(view.certificate_expires_at),
            "app_status_text": app_status_text(view),
            "retype_files": retype_files,
        },
        status_code=status_code,
    )


@router.get(OAUTH_PAGE, response_class=HTMLResponse)
async def oauth_page(request: Request, _user: PageUser, services: ServicesDep) -> Response:
    """Show the saved OAuth configuration (never the client secret nor the tokens)."""
    return _page(request, await services.config.oauth_view())


@router.get(ACCOUNTS_PAGE + "/{account}/oauth", response_class=HTMLResponse)
async def account_oauth_page(request: Request, account: str, _user: PageUser, services: ServicesDep) -> Response:
    """The OAuth page of another account (saving it creates the account)."""
    services.accounts.check_name(account)
    return _page(request, await services.config.oauth_view(account), account=account)


@router.post(OAUTH_PAGE, response_class=HTMLResponse)
async def save_oauth(request: Request, _user: PageUser, _csrf: CsrfDep, services: ServicesDep) -> Response:
    """Validate and save; on error show each field's problem next to it and keep what was typed."""
    return await _save(request, services, DEFAULT_ACCOUNT)


@router.post(ACCOUNTS_PAGE + "/{account}/oauth", response_class=HTMLResponse)
async def save_account_oauth(
    request: Request, account: str, _user: PageUser, _csrf: CsrfDep, services: ServicesDep
) -> Response:
    """Save another account's OAuth page (creating the account)."""
    services.accounts.check_name(account)
    return await _save(request, services, account)


async def _save(request: Request, services: Services, account: str) -> Response:
    form = await request.form()
    names = ("provider", "tenant", "client_id", "redirect_uri", "grant", "mailbox", "client_secret_expires_on")
    values = {name: _text(form.get(name)) for name in names}
    secret = _text(form.get("client_secret"))
    files: dict[str, str] = {}
    for name in ("certificate", "private_key", "service_account_key"):
        try:
            files[name] = await _upload(form.get(name))
        except ValueError as exc:
            return _page(
                request, await services.config.oauth_view(account), values, {name: str(exc)}, 422, account=account
            )
    before = await services.config.oauth_view(account)
    oauth_path, _ = account_pages(account)
    try:
        view = await services.accounts.save_oauth(
            account,
            OAuthConfigUpdate(
                provider=values["provider"],
                tenant=values["tenant"],
                client_id=values["client_id"],
                client_secret=secret or None,
                redirect_uri=values["redirect_uri"],
                client_secret_expires_on=values["client_secret_expires_on"][:64],
                grant=values["grant"] or None,
                mailbox=values["mailbox"],
                certificate_pem=files["certificate"] or None,
                private_key_pem=files["private_key"] or None,
                service_account_key=files["service_account_key"] or None,
            ),
        )
    except ValidationError as exc:
        return _page(
            request,
            before,
            values,
            exc.errors,
            422,
            retype_secret=bool(secret),
            account=account,
            retype_files=any(files.values()),
        )
    except MailgateError as exc:
        return _page(request, before, values, {"form": f"{exc.message} {exc.hint}".strip()}, 409, account=account)
    services.tokens.forget(account)
    text = "Saved."
    if before.refresh_token_set and not view.refresh_token_set:
        text += (
            " The refresh token was deleted because the provider, client ID or tenant changed:"
            " authorize again on the Email server page."
        )
    elif view.grant != Grant.AUTHORIZATION_CODE:
        text += " No consent is needed: use Test connection on the Email server page to get a token and sign in."
    elif not view.refresh_token_set:
        text += " Next: on the Email server page, choose OAuth authentication and click Authorize."
    return redirect_to(request, oauth_path, Flash("ok", text))


def _text(value: object) -> str:
    return value[:4096] if isinstance(value, str) else ""


async def _upload(value: object) -> str:
    """The text of an uploaded PEM or JSON file ("" when none was chosen)."""
    if not isinstance(value, UploadFile):
        return ""
    data = await value.read(_MAX_UPLOAD + 1)
    if len(data) > _MAX_UPLOAD:
        raise ValueError(f"is too large (at most {_MAX_UPLOAD // 1024} KB): choose the PEM or JSON file itself")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("is not a text file: choose the PEM (Base64) or JSON file, not a DER or PFX one") from None


@router.post(OAUTH_PAGE + "/disconnect", response_class=HTMLResponse)
async def disconnect(request: Request, _user: PageUser, _csrf: CsrfDep, services: ServicesDep) -> Response:
    """Revoke the refresh token at the provider (when it supports revocation) and delete it here."""
    return await _disconnect(request, services, DEFAULT_ACCOUNT)


@router.post(ACCOUNTS_PAGE + "/{account}/oauth/disconnect", response_class=HTMLResponse)
async def disconnect_account(
    request: Request, account: str, _user: PageUser, _csrf: CsrfDep, services: ServicesDep
) -> Response:
    """Disconnect another account."""
    return await _disconnect(request, services, await services.accounts.require(account))


async def _disconnect(request: Request, services: Services, account: str) -> Response:
    view = await services.config.oauth_view(account)
    spec = services.catalogue.providers.get(view.provider)
    oauth_path, _ = account_pages(account)
    try:
        revoked = await services.consent.disconnect(account)
    except MailgateError as exc:
        return redirect_to(request, oauth_path, Flash("error", exc.message, exc.hint))
    services.tokens.forget(account)
    text, hint = "Disconnected: the refresh token was deleted here", ""
    if revoked:
        text += " and revoked at the provider."
    elif spec is not None and not spec.revocation_url:
        text += "."
        hint = (
            f"{spec.label} offers no revocation endpoint: to withdraw the consent there too, remove the app from "
            "the account's permissions (for Microsoft: myapps.microsoft.com, or Enterprise applications in Entra)."
        )
    else:
        text += ", but the provider did not confirm the revocation."
        hint = "Remove mailgate's access in the account's security settings at the provider if needed."
    return redirect_to(request, oauth_path, Flash("ok", text, hint))

"""The **Accounts** page (Configuration > Accounts): every sending mailbox with its token status and waiting
mail; Add opens a new account's OAuth page, Delete asks first when mail is queued or held."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..accounts import Accounts
from ..configure import OAuthConfigUpdate
from ..errors import MailgateError, ValidationError
from ..store.repository import DEFAULT_ACCOUNT
from .deps import ServicesDep
from .pages import ACCOUNTS_PAGE, CsrfDep, PageUser, account_pages, page_url, redirect_to, render
from .session import Flash

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_STATUS = {"valid": "Valid", "reauthorization_required": "Re-authorization needed", "not_authorized": "Not authorized"}


async def _page(
    request: Request, accounts: Accounts, *, name: str = "", errors: dict[str, str] | None = None, status: int = 200
) -> HTMLResponse:
    rows = []
    for summary in await accounts.list():
        oauth_path, email_path = account_pages(summary.name)
        rows.append(
            {
                **summary.to_dict(),
                "status_text": _STATUS.get(summary.token_status, summary.token_status),
                "oauth_url": page_url(request, oauth_path),
                "email_url": page_url(request, email_path),
                "delete_url": page_url(request, f"{ACCOUNTS_PAGE}/{summary.name}/delete"),
                "deletable": summary.name != DEFAULT_ACCOUNT,
            }
        )
    return render(
        request,
        "accounts.html",
        {
            "title": "Accounts",
            "page": "accounts",
            "rows": rows,
            "name": name,
            "errors": errors or {},
            "add_url": page_url(request, ACCOUNTS_PAGE),
        },
        status_code=status,
    )


@router.get(ACCOUNTS_PAGE, response_class=HTMLResponse)
async def accounts_page(request: Request, _user: PageUser, services: ServicesDep) -> Response:
    """Every account: name, mailbox, provider, token status, queued and held messages."""
    return await _page(request, services.accounts)


@router.post(ACCOUNTS_PAGE, response_class=HTMLResponse)
async def add_account(request: Request, _user: PageUser, _csrf: CsrfDep, services: ServicesDep) -> Response:
    """Add an account: with "same app registration", it gets default's OAuth client settings at once; then its
    OAuth page opens (saving there creates it otherwise)."""
    form = await request.form()
    name = str(form.get("name", "")).strip()[:64]
    try:
        services.accounts.check_name(name, "name")
        if name in await services.accounts.names():
            raise ValidationError({"name": f"is taken: an account {name!r} exists"})
        oauth_path, email_path = account_pages(name)
        if form.get("copy") and (await services.config.oauth_view()).client_id:
            await services.accounts.save_oauth(name, OAuthConfigUpdate(copy_from=DEFAULT_ACCOUNT))
            text = f"Account {name} added with the OAuth client of default. Next: fill in its Email server page and "
            return redirect_to(request, email_path, Flash("ok", text + "click Authorize, signed in as its mailbox."))
    except ValidationError as exc:
        return await _page(request, services.accounts, name=name, errors=exc.errors, status=422)
    except MailgateError as exc:
        errors = {"name": f"{exc.message} {exc.hint}".strip()}
        return await _page(request, services.accounts, name=name, errors=errors, status=409)
    flash = Flash("info", f"New account {name}: save its OAuth settings to create it.")
    return redirect_to(request, oauth_path, flash)


@router.post(ACCOUNTS_PAGE + "/{account}/delete", response_class=HTMLResponse)
async def delete_account(
    request: Request, account: str, _user: PageUser, _csrf: CsrfDep, services: ServicesDep
) -> Response:
    """Delete an account; when it has mail waiting, a confirmation page first (its Delete sends ``force``)."""
    form = await request.form()
    force = str(form.get("force", "")) == "true"
    try:
        summary = await services.accounts.get(account)
        if (summary.queued or summary.held) and not force:
            return render(
                request,
                "account_delete.html",
                {"title": "Delete account", "page": "accounts", "account": summary,
                 "delete_url": page_url(request, f"{ACCOUNTS_PAGE}/{account}/delete"),
                 "back_url": page_url(request, ACCOUNTS_PAGE)},
            )  # fmt: skip
        result = await services.accounts.delete(account, force=force)
    except MailgateError as exc:
        return redirect_to(request, ACCOUNTS_PAGE, Flash("error", exc.message, exc.hint))
    services.tokens.forget(account)
    text = f"Account {account} deleted"
    text += " and its refresh token revoked at the provider." if result.revoked_at_provider else "."
    if result.failed_messages:
        text += f" {result.failed_messages} message(s) waiting for it were marked failed (account deleted)."
    return redirect_to(request, ACCOUNTS_PAGE, Flash("ok", text))

"""``/v2/oauth/...``: the OAuth page's configuration, the consent flow and its redirect callback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..app import Services
from ..configure import OAuthConfigUpdate
from ..errors import OAuthFlowError
from ..providers import Catalogue
from ..store.repository import DEFAULT_ACCOUNT
from .deps import AdminDep, ServicesDep
from .schemas import OAuthConfigIn, sent_text
from .session import Flash, web_keys

__all__ = ["FLOW_COOKIE", "public_catalogue", "router", "start_authorization", "write_config"]

router = APIRouter(prefix="/oauth", tags=["oauth"])
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
FLOW_COOKIE = "mailgate_oauth_flow"


@router.get("/config")
async def get_config(_: AdminDep, services: ServicesDep) -> dict[str, Any]:
    return (await services.config.oauth_view()).to_dict()


@router.put("/config")
async def put_config(body: OAuthConfigIn, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Change the settings sent; a field left out keeps its stored value (a partial update).

    ``null`` or ``""`` clears ``tenant`` and resets ``redirect_uri`` to the default.  ``client_secret`` is
    write-only: left out, null or empty keeps the stored one.  When ``provider`` changes, the client ID and secret
    are not carried over (they belong to the old app registration).  The merged settings are validated whole:
    on a 422 (naming each field) nothing is stored.
    """
    return await write_config(services, DEFAULT_ACCOUNT, body)


async def write_config(services: Services, account: str, body: OAuthConfigIn) -> dict[str, Any]:
    """A partial update of the account's OAuth settings (creating the account); see ``put_config``."""
    view = await services.accounts.save_oauth(
        account,
        OAuthConfigUpdate(
            provider=sent_text(body, "provider"),
            tenant=sent_text(body, "tenant"),
            client_id=sent_text(body, "client_id"),
            client_secret=body.client_secret or None,
            redirect_uri=sent_text(body, "redirect_uri"),
            authorization_url=body.authorization_url,
            token_url=body.token_url,
            copy_from=body.copy_from,
            client_secret_expires_on=sent_text(body, "client_secret_expires_on"),
            grant=sent_text(body, "grant"),
            mailbox=sent_text(body, "mailbox"),
            certificate_pem=body.certificate_pem or None,
            private_key_pem=body.private_key_pem or None,
            service_account_key=body.service_account_key or None,
        ),
    )
    services.tokens.forget(account)
    return view.to_dict()


def public_catalogue(catalogue: Catalogue) -> list[dict[str, Any]]:
    """The catalogue as the provider list and the greyed-out URL fields need it (``{tenant}`` left in)."""
    return [
        {
            "name": p.name,
            "label": p.label,
            "requires_tenant": p.requires_tenant,
            "default_tenant": p.default_tenant,
            "authorization_url": p.authorization_url,
            "token_url": p.token_url,
            "smtp_host": p.smtp_host,
            "smtp_port": p.smtp_port,
            "smtp_security": p.smtp_security.value,
            "supports_revocation": bool(p.revocation_url),
            "grants": ["authorization_code", *p.app_grants],
        }
        for p in catalogue.providers.values()
    ]


@router.get("/providers")
async def list_providers(_: AdminDep, services: ServicesDep) -> list[dict[str, Any]]:
    """The provider catalogue."""
    return public_catalogue(services.catalogue)


@router.get("/authorize", response_class=RedirectResponse, status_code=302)
async def authorize(request: Request, _: AdminDep, services: ServicesDep, return_to: str = "") -> Response:
    """302 to the provider's consent page.  A cookie binds the flow to this browser (RFC 9700 s.4.7.1)."""
    return await start_authorization(request, services, DEFAULT_ACCOUNT, return_to)


async def start_authorization(request: Request, services: Services, account: str, return_to: str) -> Response:
    """302 to the provider's consent page for ``account`` (the one-time state records the account)."""
    safe_return = return_to if _local_page(services.settings.context_path, return_to) else ""
    start = await services.consent.start(
        binding=request.cookies.get(FLOW_COOKIE), return_to=safe_return, account_name=account
    )
    response = RedirectResponse(start.url, status_code=302)
    response.set_cookie(
        FLOW_COOKIE,
        start.binding,
        max_age=1800,
        # The redirect URI's path: the callback is where the cookie must come back.
        path=f"{services.settings.api_prefix}/oauth",
        httponly=True,
        secure=services.settings.base_url.startswith("https://"),
        # Lax: sent on the provider's top-level GET redirect back to us, not on cross-site subrequests.
        samesite="lax",
    )
    return response


@router.get("/redirect", response_class=HTMLResponse)
async def redirect(request: Request, services: ServicesDep) -> Response:
    """The provider's callback.  No login needed: the one-time state and the flow cookie authenticate it."""
    wants_json = "application/json" in request.headers.get("accept", "")
    params = dict(request.query_params)
    try:
        result = await services.consent.complete(binding=request.cookies.get(FLOW_COOKIE), params=params)
    except OAuthFlowError as exc:
        if wants_json:
            return JSONResponse(exc.to_dict(), status_code=exc.http_status)
        back = await services.consent.return_to(params.get("state", ""))
        if _local_page(services.settings.context_path, back):
            # Back to the page that started the flow (the Email server page), which shows what happened.
            text = f"{exc.message} {exc.cause}".strip()
            if exc.provider_error and exc.provider_error not in text:
                text += f" (provider error: {exc.provider_error})"
            if "nothing was changed" not in f"{text} {exc.hint}".lower():
                text += " Nothing was changed."
            return _back(request, back, Flash("error", text, exc.hint))
        return templates.TemplateResponse(
            request,
            "oauth_result.html",
            {
                "ok": False,
                "message": exc.message,
                "cause": exc.cause,
                "hint": exc.hint,
                "provider_error": exc.provider_error,
                "provider_text": exc.provider_text,
                "back": f"{services.settings.context_path}/",
            },
            status_code=exc.http_status,
        )
    body = {"ok": True, "account": result.account, "provider": result.provider, "refresh_token_set": True}
    if wants_json:
        return JSONResponse(body)
    if _local_page(services.settings.context_path, result.return_to):
        who = f" as {result.account}" if result.account else ""
        if result.account_name != DEFAULT_ACCOUNT:
            who += f" for account {result.account_name}"
        text = f"Authorized{who}: the refresh token is stored and mailgate can send email with OAuth."
        return _back(request, result.return_to, Flash("ok", text))
    return templates.TemplateResponse(
        request,
        "oauth_result.html",
        {**body, "back": result.return_to or f"{services.settings.context_path}/"},
    )


def _local_page(context_path: str, path: str) -> bool:
    """Whether ``path`` is one of our pages: never another site (``//host``, ``/\\host``)."""
    return path.startswith(context_path + "/") and "\\" not in path and "//" not in path


def _back(request: Request, path: str, flash: Flash) -> Response:
    response = RedirectResponse(path, status_code=303)
    web_keys(request).set_flash(response, flash)
    return response


@router.post("/disconnect")
async def disconnect(_: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Revoke the refresh token at the provider (where it supports RFC 7009) and delete it here."""
    revoked = await services.consent.disconnect()
    services.tokens.forget(DEFAULT_ACCOUNT)
    return {"revoked_at_provider": revoked, **(await services.config.oauth_view()).to_dict()}

"""``/v2/accounts``: the sending mailboxes, each with the same OAuth and Email server resources as ``default``.

``PUT .../oauth/config`` or ``PUT .../email/server`` creates an account; the routes without an account
(``/v2/oauth/config``, ``/v2/email/server``, ``/v2/oauth/authorize``) keep editing ``default``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from .deps import AdminDep, ServicesDep
from .email_api import read_server, test_server_of, write_server
from .oauth_api import start_authorization, write_config
from .schemas import EmailServerIn, OAuthConfigIn, ServerTestIn

__all__ = ["router"]

router = APIRouter(prefix="/accounts", tags=["accounts"])


@router.get("")
async def list_accounts(_: AdminDep, services: ServicesDep) -> list[dict[str, Any]]:
    """Every account (``default`` first): name, mailbox, provider, token status, extra senders, and how many
    of its messages are queued (queued, retrying or being sent) and held."""
    return [summary.to_dict() for summary in await services.accounts.list()]


@router.get("/{name}")
async def get_account(name: str, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """One account, as listed."""
    return (await services.accounts.get(name)).to_dict()


@router.delete("/{name}")
async def delete_account(
    name: str,
    _: AdminDep,
    services: ServicesDep,
    force: Annotated[bool, Query(description="Fail its queued and held messages ('account deleted').")] = False,
) -> dict[str, Any]:
    """Revoke the account's refresh token (where the provider supports it) and delete its settings.

    409 for ``default``, and while it has messages queued, being sent or held unless ``force=true``: they are
    then marked failed with the reason "account deleted", never dropped silently."""
    result = await services.accounts.delete(name, force=force)
    services.tokens.forget(name)
    return {
        "name": result.name,
        "deleted": True,
        "revoked_at_provider": result.revoked_at_provider,
        "failed_messages": result.failed_messages,
    }


@router.get("/{name}/oauth/config")
async def get_oauth_config(name: str, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """The account's OAuth settings and token status (never the secret or the tokens)."""
    return (await services.config.oauth_view(await services.accounts.require(name))).to_dict()


@router.put("/{name}/oauth/config")
async def put_oauth_config(name: str, body: OAuthConfigIn, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """A partial update, as ``PUT /v2/oauth/config`` (creates the account).  ``{"copy_from": "default"}``
    copies another account's provider, tenant, client ID and secret and redirect URI."""
    return await write_config(services, services.accounts.check_name(name), body)


@router.get("/{name}/oauth/authorize", status_code=302)
async def authorize(request: Request, name: str, _: AdminDep, services: ServicesDep, return_to: str = "") -> Response:
    """302 to the provider's consent page for this account; the provider comes back to the one redirect URI."""
    return await start_authorization(request, services, await services.accounts.require(name), return_to)


@router.get("/{name}/email/server")
async def get_email_server(name: str, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """The account's Email server settings and extra senders (never the password)."""
    return await read_server(services, await services.accounts.require(name))


@router.put("/{name}/email/server")
async def put_email_server(name: str, body: EmailServerIn, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """A partial update, as ``PUT /v2/email/server`` (creates the account); ``senders`` replaces the extra
    senders (addresses or ``*@domain``)."""
    return await write_server(services, services.accounts.check_name(name), body)


@router.post("/{name}/email/server/test")
async def test_email_server(
    name: str, _: AdminDep, services: ServicesDep, body: ServerTestIn | None = None
) -> dict[str, Any]:
    """Connect, TLS, EHLO, AUTH with the account's server (and send when ``send_to`` is given)."""
    return await test_server_of(services, await services.accounts.require(name), body)

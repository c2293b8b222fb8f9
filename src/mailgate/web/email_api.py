"""``/v2/email/server``: the Email server page's configuration and its connection test."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..app import Services
from ..configure import EmailServerUpdate
from ..store.repository import DEFAULT_ACCOUNT
from ..types import EmailServerConfig
from .deps import AdminDep, ServicesDep
from .schemas import EmailServerIn, ServerTestIn, sent_text

__all__ = ["read_server", "router", "test_server_of", "write_server"]

router = APIRouter(prefix="/email", tags=["email"])


def _public(server: EmailServerConfig, senders: list[str]) -> dict[str, Any]:
    return {
        "delivery": server.delivery.value,
        "host": server.host,
        "port": server.port,
        "security": server.security.value,
        "username": server.username,
        "sender": server.sender,
        "authentication": server.authentication.value,
        "password_set": bool(server.password),
        "ca_file": server.ca_file,
        "senders": senders,
    }


async def read_server(services: Services, account: str) -> dict[str, Any]:
    """The account's Email server settings as the API shows them (never the password)."""
    return _public(await services.config.email_server(account), await services.accounts.senders(account))


async def write_server(services: Services, account: str, body: EmailServerIn) -> dict[str, Any]:
    """A partial update of the account's Email server settings (creating the account); see ``put_server``."""
    # null on the port is refused like an out-of-range one (0).
    port = (body.port or 0) if "port" in body.model_fields_set else None
    senders = (body.senders or []) if "senders" in body.model_fields_set else None
    server = await services.accounts.save_email_server(
        account,
        EmailServerUpdate(
            host=sent_text(body, "host"),
            port=port,
            security=sent_text(body, "security"),
            authentication=sent_text(body, "authentication"),
            username=sent_text(body, "username"),
            sender=sent_text(body, "sender"),
            password=body.password or None,
            ca_file=sent_text(body, "ca_file"),
            delivery=sent_text(body, "delivery"),
        ),
        senders,
    )
    return _public(server, await services.accounts.senders(account))


async def test_server_of(services: Services, account: str, body: ServerTestIn | None) -> dict[str, Any]:
    """Connect, TLS, EHLO, AUTH (and send when ``send_to`` is given) with the account's server."""
    steps = await services.mailer.test(send_to=body.send_to if body else None, account=account)
    return {
        "ok": all(s.ok for s in steps),
        "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail, "hint": s.hint} for s in steps],
    }


@router.get("/server")
async def get_server(_: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """The Email server settings of the account ``default``."""
    return await read_server(services, DEFAULT_ACCOUNT)


@router.put("/server")
async def put_server(body: EmailServerIn, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Change the settings sent; a field left out keeps its stored value (a partial update).

    ``null`` or ``""`` clears ``username``, ``sender`` or ``ca_file``; on ``host``, ``port``, ``security`` or
    ``authentication`` it is refused.  ``password`` is write-only: left out, null or empty keeps the stored one.
    The merged settings are validated whole: on a 422 (naming each field) nothing is stored.
    """
    return await write_server(services, DEFAULT_ACCOUNT, body)


@router.post("/server/test")
async def test_server(_: AdminDep, services: ServicesDep, body: ServerTestIn | None = None) -> dict[str, Any]:
    """Connect, TLS, EHLO, AUTH (and send a test message when ``send_to`` is given): each step's result."""
    return await test_server_of(services, DEFAULT_ACCOUNT, body)

"""``/v2/email/server``: the Email server page's configuration and its connection test."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..configure import EmailServerUpdate
from ..types import EmailServerConfig
from .deps import AdminDep, ServicesDep
from .schemas import EmailServerIn, ServerTestIn

__all__ = ["router"]

router = APIRouter(prefix="/email", tags=["email"])


def _public(server: EmailServerConfig) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "security": server.security.value,
        "username": server.username,
        "sender": server.sender,
        "authentication": server.authentication.value,
        "password_set": bool(server.password),
        "ca_file": server.ca_file,
    }


@router.get("/server")
async def get_server(_: AdminDep, services: ServicesDep) -> dict[str, Any]:
    return _public(await services.config.email_server())


@router.put("/server")
async def put_server(body: EmailServerIn, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    server = await services.config.save_email_server(
        EmailServerUpdate(
            host=body.host,
            port=body.port,
            security=body.security,
            authentication=body.authentication,
            username=body.username,
            sender=body.sender,
            password=body.password,
            ca_file=body.ca_file,
        )
    )
    return _public(server)


@router.post("/server/test")
async def test_server(_: AdminDep, services: ServicesDep, body: ServerTestIn | None = None) -> dict[str, Any]:
    """Connect, TLS, EHLO, AUTH (and send a test message when ``send_to`` is given): each step's result."""
    steps = await services.mailer.test(send_to=body.send_to if body else None)
    return {
        "ok": all(s.ok for s in steps),
        "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail, "hint": s.hint} for s in steps],
    }

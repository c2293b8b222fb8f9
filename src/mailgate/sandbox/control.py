"""The inbox viewer and the control endpoints that let tests drive the sandbox from outside the process.

The control endpoints have no authentication: the sandbox is a local test tool and listens on loopback.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .inbox import Inbox, ReceivedMessage
from .pages import Pages
from .state import SandboxState

__all__ = ["control_router"]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def control_router(state: SandboxState, inbox: Inbox, pages: Pages) -> APIRouter:
    """Routes ``/inbox...`` and ``/_control/...``."""
    router = APIRouter()

    def find(message_id: str) -> ReceivedMessage | None:
        return inbox.get(int(message_id)) if message_id.isdigit() else None

    @router.get("/inbox")
    async def inbox_page() -> Response:
        """The received messages, newest first."""
        return pages.inbox(inbox.messages())

    @router.get("/inbox.json")
    async def inbox_json() -> Response:
        """The received messages, oldest first, raw text included."""
        return JSONResponse([m.to_dict() for m in inbox.messages()])

    @router.get("/inbox/{message_id}")
    async def message_page(message_id: str) -> Response:
        message = find(message_id)
        if message is None:
            return PlainTextResponse("No such message.", status_code=404)
        return pages.message(message)

    @router.get("/inbox/{message_id}/raw")
    async def message_raw(message_id: str) -> Response:
        message = find(message_id)
        if message is None:
            return PlainTextResponse("No such message.", status_code=404)
        return Response(message.raw, media_type="text/plain; charset=utf-8")

    @router.post("/_control/revoke-all")
    async def revoke_all() -> Response:
        """Every refresh token dies (as after a password change)."""
        return JSONResponse({"revoked": state.revoke_all()})

    @router.post("/_control/expire-access-tokens")
    async def expire_access_tokens() -> Response:
        """Every access token issued so far expires now."""
        return JSONResponse({"expired": state.expire_access_tokens()})

    @router.post("/_control/token-endpoint")
    async def token_endpoint(available: str) -> Response:
        """``?available=false``: the token endpoint answers 503 until ``?available=true``."""
        if available.lower() not in (*_TRUE, *_FALSE):
            return JSONResponse({"error": "available must be true or false"}, status_code=400)
        state.token_endpoint_available = available.lower() in _TRUE
        return JSONResponse({"available": state.token_endpoint_available})

    @router.get("/_control/stats")
    async def stats() -> Response:
        """Counters: token requests by grant type, authorizations, SMTP authentications, messages."""
        return JSONResponse(state.stats())

    @router.post("/_control/reset-stats")
    async def reset_stats() -> Response:
        state.reset_stats()
        return JSONResponse(state.stats())

    @router.post("/_control/clear-inbox")
    async def clear_inbox() -> Response:
        count = len(inbox.messages())
        inbox.clear()
        return JSONResponse({"cleared": count})

    @router.post("/_control/tokens")
    async def mint_tokens(request: Request, account: str = "", client_id: str = "", scope: str = "") -> Response:
        """Tokens for ``account`` without the consent flow (test data; not counted as a token request)."""
        try:
            body = state.mint_tokens(
                account or state.config.default_account,
                client_id=client_id,
                scope=scope,
                issuer=str(request.base_url).rstrip("/") + "/sandbox/v2.0",
            )
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @router.post("/_control/app-certificates")
    async def app_certificate(request: Request) -> Response:
        """Register a certificate for a client (``{"client_id", "certificate_pem"}``), as uploaded under
        Certificates & secrets; without ``certificate_pem`` a key pair is made and returned (test data)."""
        data = await _json_object(request)
        try:
            answer = state.app_only.register_certificate(
                str(data.get("client_id") or state.config.clients[0].client_id), str(data.get("certificate_pem") or "")
            )
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    @router.post("/_control/service-accounts")
    async def service_account(request: Request) -> Response:
        """Register a service account with its domain-wide delegation (``scopes``) and known ``mailboxes``;
        without ``public_key_pem``, the answer is a new JSON key file (test data)."""
        data = await _json_object(request)
        try:
            answer = state.app_only.register_service_account(
                client_email=str(data.get("client_email") or ""),
                scopes=[str(s) for s in data.get("scopes") or ["https://mail.google.com/"]],
                mailboxes=[str(m) for m in data.get("mailboxes") or []],
                public_key_pem=str(data.get("public_key_pem") or ""),
            )
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if "private_key" in answer:
            answer["token_uri"] = str(request.base_url).rstrip("/") + "/token"
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    return router


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}

"""The busiest request, ``POST .../email/messages`` with an API key, without routing and dependency injection.

Applications queue messages through this one endpoint, often many per second; FastAPI's routing, dependency
solving and middleware stack cost about as much CPU as queueing the message itself.  This ASGI middleware
answers such requests with the route's own code (:func:`.messages_api.queue_message`) and error answers,
and hands everything else to the app untouched: other paths and methods, other kinds of authentication, a
key that does not verify (the app answers 401), an over-long Idempotency-Key (the app answers 422).
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..app import Services
from ..errors import MailgateError
from .deps import bearer_token
from .errors import client_gone_response, mailgate_error_response, validation_error_response
from .messages_api import MAX_IDEMPOTENCY_KEY, queue_message

__all__ = ["QueueFastPath"]


class QueueFastPath:
    """Pure ASGI middleware, in front of the whole FastAPI app (:class:`.app.MailgateApp`; the session
    middleware has nothing to do for a request with an Authorization header)."""

    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.services = services
        self.path = f"{services.settings.api_prefix}/email/messages"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = bearer_token(headers.get("authorization", ""))
        idempotency_key = headers.get("idempotency-key")
        if (
            key is None
            or (idempotency_key is not None and len(idempotency_key) > MAX_IDEMPOTENCY_KEY)
            or not await self.services.admins.verify_api_key(key)
        ):
            await self.app(scope, receive, send)
            return
        response: Response
        try:
            response = await queue_message(Request(scope, receive), self.services, idempotency_key)
        except MailgateError as exc:
            response = mailgate_error_response(exc)
        except RequestValidationError as exc:
            response = validation_error_response(exc)
        except ClientDisconnect:
            response = client_gone_response()
        await response(scope, receive, send)

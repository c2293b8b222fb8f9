"""The FastAPI application: routers under the context path, error handlers, OpenAPI."""

from __future__ import annotations

import functools

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from starlette.types import Receive, Scope, Send

from .. import __version__
from ..app import Services
from . import email_api, health, messages_api, oauth_api
from .errors import install_error_handlers
from .fastpath import QueueFastPath
from .pages import install_pages

__all__ = ["MailgateApp", "create_app"]


class MailgateApp(FastAPI):
    """FastAPI with :mod:`.fastpath` in front: the busiest request skips FastAPI's own middleware too (its
    error handling, telemetry hooks and body limit, which the fast path does not need)."""

    #: None: every request goes through FastAPI (the tests compare both ways).
    fast_path: QueueFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is None:
            await super().__call__(scope, receive, send)
        else:
            await self.fast_path(scope, receive, send)


def create_app(services: Services) -> MailgateApp:
    """An app serving ``services`` (whose lifecycle the caller owns)."""
    prefix = services.settings.api_prefix
    app = MailgateApp(
        title="mailgate",
        version=__version__,
        description="Send email through Gmail and Microsoft 365 with OAuth 2.0 (SMTP XOAUTH2).",
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    api = APIRouter(prefix=prefix)
    api.include_router(messages_api.router)  # first: routes are matched in order, and this is the busy one
    api.include_router(oauth_api.router)
    api.include_router(email_api.router)
    app.include_router(api)
    app.include_router(health.router)
    install_pages(app, services)
    app.fast_path = QueueFastPath(functools.partial(FastAPI.__call__, app), services=services)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{services.settings.context_path}/")

    return app

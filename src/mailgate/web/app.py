"""The FastAPI application: routers under the context path, error handlers, OpenAPI."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse

from .. import __version__
from ..app import Services
from . import accounts_api, alerts_api, email_api, health, messages_api, oauth_api, relay_api
from .errors import install_error_handlers
from .openapi import DocumentedAPI, install_docs
from .pages import install_pages
from .proxies import TrustedProxies

__all__ = ["create_app"]


def create_app(services: Services) -> FastAPI:
    """An app serving ``services`` (whose lifecycle the caller owns)."""
    prefix = services.settings.api_prefix
    app = DocumentedAPI(
        body_models=[messages_api.MessageIn],
        title="mailgate",
        version=__version__,
        description="Send email through Gmail and Microsoft 365 with OAuth 2.0 (SMTP XOAUTH2).",
        openapi_url=f"{prefix}/openapi.json",
        docs_url=None,  # install_docs: Swagger UI from the package, not from a CDN
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    api = APIRouter(prefix=prefix)
    api.include_router(messages_api.router)  # first: routes are matched in order, and this is the busy one
    api.include_router(oauth_api.router)
    api.include_router(email_api.router)
    api.include_router(accounts_api.router)
    api.include_router(relay_api.router)
    api.include_router(alerts_api.router)
    app.include_router(api)
    app.include_router(health.router)
    install_pages(app, services)
    install_docs(app, prefix, f"{services.settings.context_path}/static")
    # Outermost (added last): the limiter, the Origin check and the access log all see the same client.
    app.add_middleware(TrustedProxies, proxies=services.settings.trusted_proxies)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{services.settings.context_path}/")

    return app

"""The sandbox's HTTP side: the OAuth endpoints in both providers' path shapes, plus the app factory.

Microsoft shape: ``/{tenant}/oauth2/v2.0/authorize`` and ``/{tenant}/oauth2/v2.0/token``.
Google shape: ``/o/oauth2/v2/auth`` and ``/token``.  Both: ``/revoke`` (RFC 7009), ``/introspect``
(RFC 7662), ``/consent``.
Every route is ``async def`` so that the state is only touched from the event loop thread.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from starlette.datastructures import FormData, QueryParams
from starlette.responses import JSONResponse, RedirectResponse, Response

from .authorize import add_query
from .control import control_router
from .grant_failures import grant_failures_router
from .inbox import Inbox
from .mail_api import MailApi, mail_api_router
from .pages import Pages
from .problems import AuthorizationPageError, AuthorizationRedirectError, Flavor, TokenError
from .state import SandboxState

__all__ = ["create_app"]

#: RFC 6749 s.5.1: token answers must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _single_values(params: QueryParams | FormData) -> tuple[dict[str, str], str]:
    """The parameters as a dict, and the name of one sent twice ("" if none): RFC 6749 s.3.1 and s.3.2
    say parameters MUST NOT be included more than once."""
    values: dict[str, str] = {}
    duplicate = ""
    for key, value in params.multi_items():
        if not isinstance(value, str):
            continue
        if key in values:
            duplicate = key
        values[key] = value
    return values, duplicate


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def create_app(
    state: SandboxState,
    inbox: Inbox,
    facts: Callable[[], list[tuple[str, str]]],
    mail_api: MailApi | None = None,
) -> FastAPI:
    """The FastAPI application of one sandbox; ``facts`` feeds the index page (URLs, ports, CA file);
    ``mail_api``: the Graph and Gmail send endpoints' switches (a default one when not given)."""
    app = FastAPI(title="mailgate sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    pages = Pages()

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return pages.index(facts())

    async def authorize(request: Request, tenant: str, flavor: Flavor) -> Response:
        params, duplicate = _single_values(request.query_params)
        try:
            if duplicate:
                raise AuthorizationPageError(
                    "invalid_request", 90015, f"The parameter '{duplicate}' was sent more than once."
                )
            pending = state.begin_authorization(params, tenant=tenant, flavor=flavor)
        except AuthorizationPageError as exc:
            return pages.error(exc)
        except AuthorizationRedirectError as exc:
            answer = {"error": exc.error, "error_description": exc.description}
            if exc.state:
                answer["state"] = exc.state
            return RedirectResponse(add_query(exc.redirect_uri, answer), status_code=302)
        return pages.consent(pending, account=pending.login_hint or state.config.default_account)

    @app.get("/{tenant}/oauth2/v2.0/authorize")
    async def authorize_microsoft(tenant: str, request: Request) -> Response:
        """Entra ID's authorization endpoint."""
        return await authorize(request, tenant, "microsoft")

    @app.get("/o/oauth2/v2/auth")
    async def authorize_google(request: Request) -> Response:
        """Google's authorization endpoint."""
        return await authorize(request, "", "google")

    @app.post("/consent")
    async def consent(request: Request) -> Response:
        """The consent form: Accept redirects with a code, Deny with ``access_denied`` (RFC 6749 s.4.1.2)."""
        form, _ = _single_values(await request.form())
        consent_id, action = form.get("consent_id", ""), form.get("action", "")
        account = form.get("account", "").strip()
        try:
            if action not in ("accept", "deny"):
                raise AuthorizationPageError("invalid_request", 90015, "Choose Accept or Deny.")
            url = state.decide(consent_id, account=account, accept=action == "accept")
        except AuthorizationPageError as exc:
            return pages.error(exc)
        except ValueError as exc:
            return pages.consent(state.pending(consent_id), account=account, message=str(exc), status=400)
        return RedirectResponse(url, status_code=302)

    async def token(request: Request, tenant: str, flavor: Flavor) -> Response:
        form, duplicate = _single_values(await request.form())
        base = _base_url(request)
        authorization = request.headers.get("authorization", "")
        try:
            if duplicate:
                raise TokenError(
                    "invalid_request",
                    90015,
                    f"The parameter '{duplicate}' was sent more than once.",
                    f"Duplicate parameter: {duplicate}",
                )
            body = state.token_request(
                form,
                authorization=authorization,
                tenant=tenant,
                flavor=flavor,
                issuer=f"{base}/{tenant}/v2.0" if flavor == "microsoft" else base,
                token_url=f"{base}/{tenant}/oauth2/v2.0/token" if flavor == "microsoft" else f"{base}/token",
            )
        except TokenError as exc:
            headers = dict(_NO_STORE)
            if exc.status == 401 and authorization:
                headers["WWW-Authenticate"] = 'Basic realm="mailgate sandbox"'  # RFC 6749 s.5.2
            return JSONResponse(exc.body(flavor), status_code=exc.status, headers=headers)
        return JSONResponse(body, headers=_NO_STORE)

    @app.post("/{tenant}/oauth2/v2.0/token")
    async def token_microsoft(tenant: str, request: Request) -> Response:
        """Entra ID's token endpoint."""
        return await token(request, tenant, "microsoft")

    @app.post("/token")
    async def token_google(request: Request) -> Response:
        """Google's token endpoint."""
        return await token(request, "", "google")

    @app.post("/revoke")
    async def revoke(request: Request) -> Response:
        """RFC 7009: revoke a refresh or access token; 200 whether or not the token was known (s.2.2)."""
        form, _ = _single_values(await request.form())
        token_value = form.get("token") or request.query_params.get("token", "")
        if token_value:
            state.revoke(token_value)
        return Response(status_code=200, headers=_NO_STORE)

    @app.post("/introspect")
    async def introspect(request: Request) -> Response:
        """RFC 7662 token introspection, for resource servers such as Dovecot's ``oauth2`` passdb.

        Without client authentication (RFC 7662 s2.1 wants some): like the control endpoints, the sandbox
        is a loopback test tool, and the answer tells nothing to anyone who does not hold the token.
        """
        form, _ = _single_values(await request.form())
        return JSONResponse(state.introspect(form.get("token", "")), headers=_NO_STORE)

    app.include_router(control_router(state, inbox, pages))
    app.include_router(mail_api_router(state, inbox, mail_api or MailApi()))
    app.include_router(grant_failures_router(state.failures))
    return app

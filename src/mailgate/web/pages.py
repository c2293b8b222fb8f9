"""The admin pages' frame: login, logout, rendering, and the wiring of sessions, CSRF and static files.

The configuration pages themselves live in :mod:`.oauth_page`, :mod:`.email_page`, :mod:`.relay_page` and
:mod:`.alerts_page` (Alerts and Audit log).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..admins import ADMIN_USER
from ..app import Services
from ..audit import ACTOR
from ..lifecycle.rules import account_links
from ..store import load_or_create_key
from ..store.repository import DEFAULT_ACCOUNT
from . import csrf
from .deps import ServicesDep
from .ratelimit import LoginLimiter
from .session import SESSION_COOKIE, Flash, WebKeys, WebSessionMiddleware, web_keys

__all__ = [
    "ACCOUNTS_PAGE",
    "ALERTS_PAGE",
    "AUDIT_PAGE",
    "EMAIL_PAGE",
    "OAUTH_PAGE",
    "PAGE_HEADERS",
    "RELAY_PAGE",
    "CsrfDep",
    "LoginRequired",
    "PageUser",
    "account_pages",
    "install_pages",
    "page_url",
    "redirect_to",
    "render",
    "router",
]

#: The guide's OAuth and Email server pages: the account ``default``'s (paths relative to the context path).
OAUTH_PAGE, EMAIL_PAGE = account_links(DEFAULT_ACCOUNT)
ACCOUNTS_PAGE = "/configuration/accounts"
RELAY_PAGE = "/configuration/relay"
ALERTS_PAGE = "/configuration/alerts"
AUDIT_PAGE = "/configuration/audit"
LOGIN_PAGE = "/login"

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)

#: Pages hold CSRF tokens and configuration: no caching, no framing, scripts and styles from here only (the API
#: documentation page, /v2/docs, gets the same).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class LoginRequired(Exception):
    """A page was asked for without a session: answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def account_pages(account: str) -> tuple[str, str]:
    """The OAuth and Email server pages of ``account`` (the guide's own pages for ``default``): the paths the
    lifecycle's problems link to, so a banner's link and the page served are one definition."""
    return account_links(account)


def page_url(request: Request, page: str) -> str:
    """The absolute path of one of the pages (``OAUTH_PAGE``...) under the context path."""
    services: Services = request.app.state.services
    return services.settings.context_path + page


async def page_user(request: Request) -> str:
    """The signed-in administrator, or :class:`LoginRequired`.  Also reads what needs attention, for the
    banner every page shows (:func:`render` is synchronous)."""
    user = getattr(request.state, "session_user", None)
    if isinstance(user, str) and user:
        ACTOR.set(f"user {user}")  # whom the audit log names for what this request changes
        services: Services = request.app.state.services
        request.state.problems = await services.problems()
        return user
    target = request.url.path if request.method == "GET" else ""
    raise LoginRequired(target)


async def check_csrf(request: Request) -> None:
    """Dependency of every POST page route: 403 unless the form carries its CSRF token."""
    await csrf.verify_form(request)


PageUser = Annotated[str, Depends(page_user)]
CsrfDep = Annotated[None, Depends(check_csrf)]


def redirect_to(request: Request, page: str, flash: Flash | None = None) -> RedirectResponse:
    """303 (POST-redirect-GET) to one of the pages, with a message shown there once."""
    response = RedirectResponse(page_url(request, page), status_code=303)
    if flash is not None:
        web_keys(request).set_flash(response, flash)
    return response


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """Render a page template with what every page needs (CSRF token, user, flash, navigation)."""
    services: Services = request.app.state.services
    prefix = services.settings.context_path
    response = HTMLResponse("")
    flash = web_keys(request).pop_flash(request, response)
    page = templates.TemplateResponse(
        request,
        name,
        {
            "csrf_token": csrf.token_for(request),
            "user": getattr(request.state, "session_user", None),
            "flash": flash,
            "static": f"{prefix}/static",
            "oauth_url": prefix + OAUTH_PAGE,
            "email_url": prefix + EMAIL_PAGE,
            "accounts_url": prefix + ACCOUNTS_PAGE,
            "relay_url": prefix + RELAY_PAGE,
            "alerts_url": prefix + ALERTS_PAGE,
            "audit_url": prefix + AUDIT_PAGE,
            "logout_url": prefix + "/logout",
            "problems": [p.to_dict(prefix) for p in getattr(request.state, "problems", ())],
            **context,
        },
        status_code=status_code,
        headers=PAGE_HEADERS,
    )
    for value in response.headers.getlist("set-cookie"):
        page.headers.append("set-cookie", value)
    return page


def _safe_next(request: Request, target: str) -> str:
    """Only paths of our own pages: never another site (``//host``, ``/\\host``) after login."""
    prefix: str = request.app.state.services.settings.context_path
    if target.startswith(prefix + "/") and "\\" not in target and "//" not in target and "/v2/" not in target:
        return target
    return prefix + OAUTH_PAGE


@router.get("/")
async def home(request: Request) -> RedirectResponse:
    """The context path itself: the OAuth page (which asks for a login first when needed)."""
    return RedirectResponse(page_url(request, OAUTH_PAGE), status_code=303)


@router.get(LOGIN_PAGE, response_class=HTMLResponse)
async def login_form(request: Request, next: str = "") -> Response:
    if getattr(request.state, "session_user", None):
        return RedirectResponse(_safe_next(request, next), status_code=303)
    return render(request, "login.html", {"username": ADMIN_USER, "next": next, "error": ""})


@router.post(LOGIN_PAGE, response_class=HTMLResponse)
async def login(request: Request, services: ServicesDep, _: CsrfDep) -> Response:
    form = await request.form()
    username = str(form.get("username", "")).strip()[:64]
    password = str(form.get("password", ""))[:1024]
    next_path = str(form.get("next", ""))[:512]
    address = request.client.host if request.client else "unknown"
    limiter: LoginLimiter = request.app.state.login_limiter
    context: dict[str, Any] = {"username": username or ADMIN_USER, "next": next_path}
    wait = limiter.retry_after(address, username)
    if wait > 0:
        minutes = max(1, round(wait / 60))
        context["error"] = (
            f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
            " (An administrator can reset the password with MAILGATE_ADMIN_PASSWORD.)"
        )
        page = render(request, "login.html", context, status_code=429)
        page.headers["Retry-After"] = str(int(wait) + 1)
        return page
    if not await services.admins.verify_password(username, password):
        limiter.failed(address, username)
        await services.admins.record_sign_in(username, False, address=address, via="login form")
        context["error"] = "Wrong user name or password."
        return render(request, "login.html", context, status_code=401)
    limiter.succeeded(address, username)
    await services.admins.record_sign_in(username, True, address=address, via="login form")
    keys = web_keys(request)
    cookie, _session = keys.new_session(username, await services.admins.current_generation(username) or "")
    response = RedirectResponse(_safe_next(request, next_path), status_code=303)
    keys.set_session_cookie(response, cookie)
    return response


@router.post("/logout")
async def logout(request: Request, services: ServicesDep, _: CsrfDep) -> RedirectResponse:
    keys = web_keys(request)
    session = keys.read_session(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        # In the database: refused by every process, after restarts too, until it would have expired.
        await services.admins.revoke_session(session.session_id, session.expires)
    response = RedirectResponse(page_url(request, LOGIN_PAGE), status_code=303)
    keys.clear_session_cookie(response)
    keys.set_flash(response, Flash("info", "You are logged out."))
    return response


def install_pages(app: FastAPI, services: Services) -> None:
    """Mount the admin pages, their static files, the session middleware and the page error handlers."""
    from . import accounts_page, alerts_page, email_page, oauth_page, relay_page

    settings = services.settings
    prefix = settings.context_path
    app.state.web_keys = WebKeys(
        load_or_create_key(settings.data_dir, settings.secret_key),
        cookie_path=prefix,
        secure=settings.base_url.startswith("https://"),
    )
    app.state.login_limiter = LoginLimiter()
    app.add_middleware(WebSessionMiddleware, base_url=settings.base_url)
    app.mount(f"{prefix}/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    app.include_router(router, prefix=prefix)
    app.include_router(oauth_page.router, prefix=prefix)
    app.include_router(email_page.router, prefix=prefix)
    app.include_router(accounts_page.router, prefix=prefix)
    app.include_router(relay_page.router, prefix=prefix)
    app.include_router(alerts_page.router, prefix=prefix)

    @app.get(prefix, include_in_schema=False)
    async def context_root() -> RedirectResponse:
        return RedirectResponse(prefix + OAUTH_PAGE, status_code=303)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> RedirectResponse:
        target = f"{prefix}{LOGIN_PAGE}"
        if exc.next_path:
            target += "?next=" + quote(exc.next_path, safe="/")
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(csrf.CsrfError)
    async def csrf_refused(request: Request, _exc: csrf.CsrfError) -> HTMLResponse:
        return render(
            request,
            "refused.html",
            {
                "title": "Form refused",
                "message": "This form was refused: its security token (CSRF) is missing or out of date.",
                "hint": "Nothing was changed. Go back, reload the page and submit the form again.",
            },
            status_code=403,
        )

"""Login, logout, session cookies, CSRF refusal and login rate limiting of the admin pages."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from mailgate.app import Services, build_services
from mailgate.config import Settings
from mailgate.web import create_app
from mailgate.web.ratelimit import LoginLimiter
from mailgate.web.session import WebKeys
from tests.conftest import ADMIN_PASSWORD

from .conftest import EMAIL, LOGIN, OAUTH, UI, csrf_of, form_token, login


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_root_and_context_path_lead_to_the_login_then_the_oauth_page(web: httpx.AsyncClient) -> None:
    first = await web.get("/")
    assert first.status_code in (302, 303, 307) and first.headers["location"].endswith(f"{UI}/")
    page = await web.get("/", follow_redirects=True)
    assert page.status_code == 200
    assert str(page.url).endswith(f"{LOGIN}?next={OAUTH}")
    assert '<label for="password">Password</label>' in page.text
    response = await web.post(
        LOGIN, data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_of(page.text), "next": OAUTH}
    )
    assert response.status_code == 303 and response.headers["location"] == OAUTH
    assert (await web.get(OAUTH)).status_code == 200


async def test_session_cookie_is_httponly_samesite_and_scoped(web: httpx.AsyncClient) -> None:
    response = await login(web)
    cookie = next(v for v in response.headers.get_list("set-cookie") if v.startswith("mailgate_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and f"Path={UI}" in cookie
    assert "Secure" not in cookie  # http://localhost: a Secure cookie would not come back
    assert ADMIN_PASSWORD not in cookie


async def test_session_cookie_is_secure_behind_https(settings: Settings) -> None:
    services = await build_services(Settings(data_dir=settings.data_dir, base_url="https://mail.example.com"))
    try:
        await services.admins.ensure_admin(ADMIN_PASSWORD)
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="https://mail.example.com") as client:
            response = await login(client)
            cookie = next(v for v in response.headers.get_list("set-cookie") if v.startswith("mailgate_session="))
            assert "Secure" in cookie
    finally:
        await services.aclose()


async def test_wrong_password_is_refused_without_a_session(web: httpx.AsyncClient) -> None:
    response = await login(web, password="wrong")
    assert response.status_code == 401
    assert "Wrong user name or password." in response.text
    assert "mailgate_session" not in response.headers.get("set-cookie", "")
    assert (await web.get(OAUTH)).status_code == 303


async def test_pages_need_a_session(web: httpx.AsyncClient) -> None:
    for path in (OAUTH, EMAIL):
        response = await web.get(path)
        assert response.status_code == 303 and response.headers["location"] == f"{LOGIN}?next={path}"


async def test_after_login_next_never_leaves_the_site(web: httpx.AsyncClient) -> None:
    page = await web.get(LOGIN)
    for target in ("//evil.example/x", "https://evil.example/", f"{UI}/\\evil.example", "/elsewhere"):
        response = await web.post(
            LOGIN,
            data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_of(page.text), "next": target},
        )
        assert response.headers["location"] == OAUTH
        page = await web.get(OAUTH)  # logged in now: the next token comes from a page of the session


async def test_login_is_rate_limited_per_address_and_user(app: FastAPI, web: httpx.AsyncClient) -> None:
    clock = Clock()
    app.state.login_limiter = LoginLimiter(per_user=5, per_address=20, window=900, clock=clock)
    for _ in range(5):
        assert (await login(web, password="guess")).status_code == 401
    blocked = await login(web)  # even the right password waits
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.text and int(blocked.headers["Retry-After"]) > 0
    assert "mailgate_session" not in blocked.headers.get("set-cookie", "")
    clock.now += 901
    assert (await login(web)).status_code == 303


async def test_limiter_counts_per_address_across_user_names() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_user=3, per_address=5, window=60, clock=clock)
    for name in ("a", "b", "c", "d", "e"):
        assert limiter.retry_after("10.0.0.1", name) == 0
        limiter.failed("10.0.0.1", name)
    assert limiter.retry_after("10.0.0.1", "f") > 0
    assert limiter.retry_after("10.0.0.2", "a") == 0
    limiter.succeeded("10.0.0.1", "a")
    clock.now += 61
    assert limiter.retry_after("10.0.0.1", "f") == 0


def test_session_cookies_are_signed_and_expire() -> None:
    clock = Clock()
    keys = WebKeys("key material", cookie_path=UI, secure=False, lifetime=60, clock=clock)
    cookie, session = keys.new_session("admin", "g1")
    assert keys.read_session(cookie) == session
    body, signature = cookie.split(".")
    assert keys.read_session(f"{body}x.{signature}") is None
    assert WebKeys("other key", cookie_path=UI, secure=False).read_session(cookie) is None
    assert keys.read_session("garbage") is None and keys.read_session(None) is None
    clock.now += 61
    assert keys.read_session(cookie) is None
    assert "key material" not in repr(keys)


async def test_logout_ends_the_session_even_for_a_replayed_cookie(admin: httpx.AsyncClient) -> None:
    stolen = admin.cookies.get("mailgate_session")
    token = await form_token(admin)
    response = await admin.post(f"{UI}/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == LOGIN
    assert (await admin.get(OAUTH)).status_code == 303
    page = await admin.get(LOGIN)
    assert "You are logged out." in page.text
    admin.cookies.set("mailgate_session", stolen or "", path=UI)
    assert (await admin.get(OAUTH)).status_code == 303


@pytest.mark.parametrize(
    ("path", "data"),
    [
        (LOGIN, {"username": "admin", "password": ADMIN_PASSWORD}),
        (OAUTH, {"provider": "google", "client_id": "evil", "client_secret": "x"}),
        (f"{OAUTH}/disconnect", {}),
        (EMAIL, {"host": "evil.example", "port": "25", "security": "none", "authentication": "none"}),
        (f"{UI}/logout", {}),
    ],
)
async def test_a_form_posted_without_its_csrf_token_is_refused(
    admin: httpx.AsyncClient, services: Services, path: str, data: dict[str, str]
) -> None:
    before = (await services.config.oauth_view(), await services.config.email_server())
    for extra in ({}, {"csrf_token": "forged"}):
        response = await admin.post(path, data={**data, **extra})
        assert response.status_code == 403, response.text
        assert "security token (CSRF)" in response.text
    assert (await services.config.oauth_view(), await services.config.email_server()) == before
    assert (await admin.get(OAUTH)).status_code == 200  # still logged in


async def test_the_token_of_the_login_page_is_not_valid_after_login(web: httpx.AsyncClient) -> None:
    before = csrf_of((await web.get(LOGIN)).text)
    await login(web)
    response = await web.post(OAUTH, data={"provider": "google", "client_id": "c", "csrf_token": before})
    assert response.status_code == 403


async def test_api_calls_with_the_session_cookie_need_the_csrf_header(admin: httpx.AsyncClient) -> None:
    body = {"provider": "google", "client_id": "c.apps.googleusercontent.com", "client_secret": "s"}
    refused = await admin.put(f"{UI}/v2/oauth/config", json=body)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    token = await form_token(admin)
    accepted = await admin.put(f"{UI}/v2/oauth/config", json=body, headers={"X-CSRF-Token": token})
    assert accepted.status_code == 200, accepted.text
    assert (await admin.get(f"{UI}/v2/oauth/config")).status_code == 200  # reads need no token


async def test_pages_send_protective_headers(admin: httpx.AsyncClient) -> None:
    response = await admin.get(OAUTH)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    css = await admin.get(f"{UI}/static/mailgate.css")
    js = await admin.get(f"{UI}/static/mailgate.js")
    assert css.status_code == 200 and js.status_code == 200
    assert "http://" not in css.text and "https://" not in js.text  # nothing fetched from elsewhere

"""Cross-site requests and forwarded addresses (issue 20, points 2 and 3).

A browser replays the HTTP Basic credentials an admin typed into its prompt on any request to mailgate, a
page of another site's included: state-changing requests that the browser says come from another site are
refused, whatever authenticates them.  And the session's CSRF token is required unless the request really
authenticated with an API key or Basic, not whenever it holds an Authorization header."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from mailgate.app import Services, build_services
from mailgate.config import Settings, parse_trusted_proxies
from mailgate.errors import ConfigurationError
from mailgate.web import create_app
from mailgate.web.proxies import forwarded_client
from tests.conftest import ADMIN_PASSWORD, basic_auth

from .conftest import LOGIN, OAUTH, csrf_of, form_token

CONFIG = "/ddenterpriseapi/v2/oauth/config"
DISCONNECT = "/ddenterpriseapi/v2/oauth/disconnect"
BODY = {"provider": "google", "client_id": "c.apps.googleusercontent.com", "client_secret": "s"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:8081"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://localhost:8080", "Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_cross_site_writes_are_refused_even_with_valid_basic_credentials(
    api: httpx.AsyncClient, services: Services, headers: dict[str, str]
) -> None:
    before = await services.config.oauth_view()
    for method, path in (("PUT", CONFIG), ("POST", DISCONNECT), ("DELETE", CONFIG), ("PATCH", CONFIG)):
        refused = await api.request(method, path, json=BODY, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "forbidden" and "Refused:" in refused.json()["message"]
    assert await services.config.oauth_view() == before
    assert (await api.get(CONFIG, headers=headers)).status_code == 200  # reading is not refused


@pytest.mark.parametrize(
    "headers",
    [
        {},  # a program: neither header
        {"Origin": "http://localhost:8080", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "HTTP://LOCALHOST:8080"},
        {"Sec-Fetch-Site": "none"},  # typed by the user
    ],
)
async def test_same_origin_and_non_browser_writes_are_accepted(api: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await api.put(CONFIG, json=BODY, headers=headers)
    assert response.status_code == 200, response.text


async def test_the_origin_the_request_was_addressed_to_is_our_own(services: Services) -> None:
    """Opened as http://127.0.0.1:8080 while MAILGATE_BASE_URL says localhost: the pages still work."""
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        headers = {**basic_auth(), "Origin": "http://127.0.0.1:8080"}
        assert (await client.put(CONFIG, json=BODY, headers=headers)).status_code == 200


async def test_a_cross_site_login_form_is_refused(web: httpx.AsyncClient) -> None:
    token = csrf_of((await web.get(LOGIN)).text)
    form = {"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token, "next": ""}
    refused = await web.post(LOGIN, data=form, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and "mailgate_session" not in refused.headers.get("set-cookie", "")
    accepted = await web.post(LOGIN, data=form, headers={"Origin": "http://localhost:8080"})
    assert accepted.status_code == 303


@pytest.mark.parametrize(
    "authorization", ["Basic " + "YWRtaW46d3Jvbmc=", "Basic !!!", "Bearer mg_not-a-key", "Bearer x", "Digest y"]
)
async def test_an_invalid_authorization_header_does_not_skip_the_session_csrf_check(
    admin: httpx.AsyncClient, authorization: str
) -> None:
    refused = await admin.put(CONFIG, json=BODY, headers={"Authorization": authorization})
    assert refused.status_code == 403, refused.text
    assert "CSRF token" in refused.json()["message"]
    token = await form_token(admin)
    accepted = await admin.put(CONFIG, json=BODY, headers={"Authorization": authorization, "X-CSRF-Token": token})
    assert accepted.status_code == 200, accepted.text


async def test_a_valid_basic_header_needs_no_csrf_token_with_a_session(admin: httpx.AsyncClient) -> None:
    assert (await admin.put(CONFIG, json=BODY, headers=basic_auth())).status_code == 200
    assert (await admin.get(OAUTH)).status_code == 200


# -- forwarded addresses (point 2) ------------------------------------------------------------------------
async def _guess_from_many_addresses(client: httpx.AsyncClient, guesses: int) -> list[int]:
    codes = []
    for i in range(guesses):
        headers = {**basic_auth("guess"), "X-Forwarded-For": f"203.0.113.{i + 1}"}
        codes.append((await client.get(CONFIG, headers=headers)).status_code)
    return codes


async def test_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limiter(api: httpx.AsyncClient) -> None:
    assert await _guess_from_many_addresses(api, 6) == [401] * 5 + [429]


async def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(settings: Settings) -> None:
    proxied = Settings(
        data_dir=settings.data_dir, admin_password=ADMIN_PASSWORD, trusted_proxies=parse_trusted_proxies("127.0.0.1")
    )
    services = await build_services(proxied)
    try:
        await services.admins.ensure_admin(ADMIN_PASSWORD)
        transport = httpx.ASGITransport(app=create_app(services), client=("127.0.0.1", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as client:
            # Each address is a client of its own behind the proxy...
            assert await _guess_from_many_addresses(client, 6) == [401] * 6
            # ... and one address is limited, however it dresses up the left of the chain.
            for i in range(6):
                headers = {**basic_auth("guess"), "X-Forwarded-For": f"198.51.100.{i}, 192.0.2.9"}
                last = await client.get(CONFIG, headers=headers)
            assert last.status_code == 429
    finally:
        await services.aclose()


def test_the_client_is_the_nearest_untrusted_hop() -> None:
    proxies = parse_trusted_proxies("10.0.0.0/8, ::1")
    assert forwarded_client("192.0.2.1", "198.51.100.7", proxies) == "192.0.2.1"  # peer not a proxy
    assert forwarded_client("10.1.2.3", "198.51.100.7", proxies) == "198.51.100.7"
    assert forwarded_client("10.1.2.3", "6.6.6.6, 198.51.100.7, 10.9.9.9", proxies) == "198.51.100.7"
    assert forwarded_client("::1", "10.0.0.5, 10.0.0.6", proxies) == "10.0.0.5"  # all proxies: the first
    assert forwarded_client("10.1.2.3", "made-up, 10.0.0.6", proxies) == "10.0.0.6"
    assert forwarded_client("10.1.2.3", "", proxies) == "10.1.2.3"


def test_trusted_proxies_are_read_from_the_environment() -> None:
    assert Settings.from_env({}).trusted_proxies == ()
    parsed = Settings.from_env({"MAILGATE_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"}).trusted_proxies
    assert parsed == tuple(ipaddress.ip_network(n) for n in ("127.0.0.1/32", "10.0.0.0/8", "::1/128"))
    with pytest.raises(ConfigurationError, match=r"MAILGATE_TRUSTED_PROXIES: 'proxy\.local'"):
        Settings.from_env({"MAILGATE_TRUSTED_PROXIES": "10.0.0.1,proxy.local"})

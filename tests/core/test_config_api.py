"""The configuration API: the OAuth page and the Email server page over REST, bad input refused whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from mailgate.app import Services

API = "/ddenterpriseapi/v2"
MS = {
    "provider": "microsoft",
    "tenant": "contoso.onmicrosoft.com",
    "client_id": "cid-1",
    "client_secret": "S3cr3t-v4lue",
}


async def test_defaults_before_anything_is_saved(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{API}/oauth/config")
    assert r.status_code == 200
    body = r.json()
    assert body["redirect_uri"] == "http://localhost:8080/ddenterpriseapi/v2/oauth/redirect"
    assert body["refresh_token_set"] is False and body["client_secret_set"] is False
    assert body["token_status"] == "not_authorized"


async def test_save_microsoft_config_derives_urls_and_hides_the_secret(
    api: httpx.AsyncClient, services: Services
) -> None:
    r = await api.put(f"{API}/oauth/config", json=MS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["authorization_url"] == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
    )
    assert body["token_url"].endswith("/contoso.onmicrosoft.com/oauth2/v2.0/token")
    assert body["client_secret_set"] is True
    assert "client_secret" not in body and "S3cr3t-v4lue" not in r.text
    again = await api.get(f"{API}/oauth/config")
    assert "S3cr3t-v4lue" not in again.text and again.json()["client_id"] == "cid-1"
    # Choosing the provider pre-filled the Email server page.
    server = (await api.get(f"{API}/email/server")).json()
    assert (server["host"], server["port"], server["security"]) == ("smtp.office365.com", 587, "starttls")
    assert server["authentication"] == "oauth"


async def test_secret_is_kept_when_omitted(api: httpx.AsyncClient, services: Services) -> None:
    await api.put(f"{API}/oauth/config", json=MS)
    r = await api.put(f"{API}/oauth/config", json={**MS, "client_secret": None, "client_id": "cid-2"})
    assert r.json()["client_secret_set"] is True
    view = await services.config.oauth_view()
    assert view.client_id == "cid-2"


async def test_google_has_no_tenant(api: httpx.AsyncClient) -> None:
    r = await api.put(
        f"{API}/oauth/config",
        json={
            "provider": "google",
            "client_id": "x.apps.googleusercontent.com",
            "client_secret": "g",
            "tenant": "ignored",
        },
    )
    assert r.status_code == 200
    assert r.json()["tenant"] == "" and r.json()["token_url"] == "https://oauth2.googleapis.com/token"


BAD_OAUTH: list[tuple[dict[str, Any], str]] = [
    ({**MS, "provider": "yahoo"}, "provider"),
    ({**MS, "tenant": "not a tenant!"}, "tenant"),
    ({**MS, "tenant": ""}, "tenant"),
    ({**MS, "client_id": ""}, "client_id"),
    ({**MS, "client_id": "   "}, "client_id"),
    ({**MS, "client_id": "x" * 300}, "client_id"),
    ({**MS, "client_secret": "y" * 5000}, "client_secret"),
    ({**MS, "redirect_uri": "http://mailgate.example.com/cb"}, "redirect_uri"),
    ({**MS, "redirect_uri": "not a url"}, "redirect_uri"),
    ({**MS, "token_url": "http://evil.example/token"}, "token_url"),
    ({**MS, "authorization_url": "https://evil.example/authorize"}, "authorization_url"),
    ({**MS, "unknown_field": 1}, "unknown_field"),
    ({"provider": None, "tenant": "common"}, "provider"),
]


@pytest.mark.parametrize(("body", "field"), BAD_OAUTH)
async def test_bad_oauth_input_is_refused_and_nothing_is_stored(
    api: httpx.AsyncClient, services: Services, body: dict[str, Any], field: str
) -> None:
    await api.put(f"{API}/oauth/config", json={**MS, "client_id": "original"})
    r = await api.put(f"{API}/oauth/config", json=body)
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["error"] == "invalid_input"
    assert field in answer["fields"], answer
    assert (await services.config.oauth_view()).client_id == "original"


async def test_body_that_is_not_json_is_a_4xx(api: httpx.AsyncClient) -> None:
    r = await api.put(f"{API}/oauth/config", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_input"


async def test_http_token_url_from_providers_file_is_refused_at_start(tmp_path: Path) -> None:
    from mailgate.app import build_services
    from mailgate.config import Settings
    from mailgate.errors import ConfigurationError

    bad = tmp_path / "providers.toml"
    bad.write_text('[providers.google]\ntoken_url = "http://token.example.com/token"\n')
    with pytest.raises(ConfigurationError, match="https"):
        await build_services(Settings(data_dir=tmp_path / "d", providers_file=bad))


GOOD_SERVER = {
    "host": "smtp.office365.com",
    "port": 587,
    "security": "starttls",
    "authentication": "oauth",
    "sender": "reports@contoso.com",
}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"host": ""}, "host"),
        ({"host": "bad host!"}, "host"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"security": "tls13"}, "security"),
        ({"authentication": "kerberos"}, "authentication"),
        ({"sender": "not-an-address"}, "sender"),
        ({"sender": "a@b.com\r\nBcc: victim@x.com"}, "sender"),
        ({"authentication": "password", "username": "u"}, "password"),
        ({"authentication": "oauth", "security": "none"}, "security"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"port": "587; DROP"}, "port"),
    ],
)
async def test_bad_email_server_input_is_refused(api: httpx.AsyncClient, patch: dict[str, Any], field: str) -> None:
    assert (await api.put(f"{API}/email/server", json=GOOD_SERVER)).status_code == 200
    r = await api.put(f"{API}/email/server", json={**GOOD_SERVER, **patch})
    assert r.status_code == 422, r.text
    assert field in r.json()["fields"]
    assert (await api.get(f"{API}/email/server")).json()["sender"] == "reports@contoso.com"


async def test_smtp_password_is_write_only(api: httpx.AsyncClient) -> None:
    body = {**GOOD_SERVER, "authentication": "password", "username": "u@contoso.com", "password": "pa55word!"}
    r = await api.put(f"{API}/email/server", json=body)
    assert r.status_code == 200 and "pa55word!" not in r.text and r.json()["password_set"] is True
    r = await api.put(f"{API}/email/server", json={**body, "password": None, "port": 25})
    assert r.json()["password_set"] is True


async def test_authentication_is_required(services: Services) -> None:
    from mailgate.web import create_app

    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as anonymous:
        r = await anonymous.get(f"{API}/oauth/config")
        assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]
        r = await anonymous.get(f"{API}/oauth/config", headers={"Authorization": "Basic YWRtaW46d3Jvbmc="})
        assert r.status_code == 401
        key = await services.admins.create_api_key("app")
        r = await anonymous.get(f"{API}/oauth/config", headers={"Authorization": f"Bearer {key.key}"})
        assert r.status_code == 200
        assert (await anonymous.get("/healthz")).json()["database"] == "ok"


async def test_openapi_is_served(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{API}/openapi.json")
    assert r.status_code == 200 and f"{API}/oauth/config" in r.json()["paths"]

"""``PUT /v2/email/server`` and ``PUT /v2/oauth/config`` are partial updates: a field left out keeps its stored
value, ``null`` or ``""`` clears an optional one, secrets stay write-only, and the merged result is validated whole
(422 naming the field, nothing stored)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mailgate.app import Services

API = "/ddenterpriseapi/v2"
SANDBOX = {"provider": "sandbox", "client_id": "sandbox-client", "client_secret": "sandbox-secret"}
MS = {"provider": "microsoft", "tenant": "contoso.onmicrosoft.com", "client_id": "cid-1", "client_secret": "S3cr3t"}
FULL_SERVER = {
    "host": "smtp.office365.com",
    "port": 587,
    "security": "starttls",
    "authentication": "oauth",
    "username": "reports@contoso.com",
    "sender": "reports@contoso.com",
}


async def server(api: httpx.AsyncClient) -> dict[str, Any]:
    r = await api.get(f"{API}/email/server")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def put_server(api: httpx.AsyncClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = await api.put(f"{API}/email/server", json=body)
    assert r.status_code == status, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def test_the_readmes_example_keeps_username_and_sender(api: httpx.AsyncClient) -> None:
    await put_server(api, FULL_SERVER)
    # The README's sandbox walkthrough sends host, port, security and authentication only.
    answer = await put_server(
        api, {"host": "127.0.0.1", "port": 8587, "security": "starttls", "authentication": "oauth"}
    )
    assert (answer["username"], answer["sender"]) == ("reports@contoso.com", "reports@contoso.com")
    assert await server(api) == answer


async def test_one_field_changes_only_that_field(api: httpx.AsyncClient) -> None:
    before = await put_server(api, FULL_SERVER)
    after = await put_server(api, {"port": 465, "security": "ssl"})
    assert after == {**before, "port": 465, "security": "ssl"}


@pytest.mark.parametrize("empty", [None, ""])
@pytest.mark.parametrize("field", ["username", "sender"])
async def test_null_or_empty_clears_an_optional_field(api: httpx.AsyncClient, field: str, empty: str | None) -> None:
    await put_server(api, FULL_SERVER)
    answer = await put_server(api, {field: empty})
    assert answer[field] == ""
    other = "sender" if field == "username" else "username"
    assert answer[other] == "reports@contoso.com"


@pytest.mark.parametrize("field", ["host", "port", "security", "authentication"])
async def test_null_on_a_required_field_is_refused_and_nothing_stored(api: httpx.AsyncClient, field: str) -> None:
    before = await put_server(api, FULL_SERVER)
    answer = await put_server(api, {field: None, "sender": "other@contoso.com"}, status=422)
    assert field in answer["fields"], answer
    assert await server(api) == before


async def test_the_merged_result_is_validated(api: httpx.AsyncClient) -> None:
    before = await put_server(api, {**FULL_SERVER, "username": ""})
    # Password authentication needs a username and a password: neither is stored nor sent.
    answer = await put_server(api, {"authentication": "password"}, status=422)
    assert {"username", "password"} <= set(answer["fields"]), answer
    assert await server(api) == before
    # OAuth over an unencrypted connection: the stored authentication meets the security sent.
    answer = await put_server(api, {"security": "none"}, status=422)
    assert "security" in answer["fields"]
    assert await server(api) == before


async def test_nothing_stored_yet_starts_from_the_providers_defaults(api: httpx.AsyncClient) -> None:
    answer = await put_server(api, {"sender": "a@example.com"}, status=422)
    assert "host" in answer["fields"]  # no provider chosen: no default host
    assert (await api.put(f"{API}/oauth/config", json=MS)).status_code == 200
    answer = await put_server(api, {"sender": "a@example.com"})
    assert (answer["host"], answer["port"], answer["security"]) == ("smtp.office365.com", 587, "starttls")


async def test_the_password_stays_write_only_and_is_kept_when_left_out(api: httpx.AsyncClient) -> None:
    await put_server(api, {**FULL_SERVER, "authentication": "password", "password": "pa55word!"})
    for body in ({"port": 25}, {"password": None}, {"password": ""}):
        r = await api.put(f"{API}/email/server", json=body)
        assert r.status_code == 200 and "pa55word!" not in r.text and r.json()["password_set"] is True
    answer = await put_server(api, {"authentication": "oauth"})
    assert answer["password_set"] is False  # only password authentication keeps one


async def oauth(api: httpx.AsyncClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = await api.put(f"{API}/oauth/config", json=body)
    assert r.status_code == status, r.text
    assert "S3cr3t" not in r.text
    answer: dict[str, Any] = r.json()
    return answer


async def test_oauth_config_keeps_what_is_left_out(api: httpx.AsyncClient, services: Services) -> None:
    custom = "https://mailgate.contoso.com/ddenterpriseapi/v2/oauth/redirect"
    before = await oauth(api, {**MS, "redirect_uri": custom})
    after = await oauth(api, {"client_id": "cid-2"})
    assert after == {**before, "client_id": "cid-2"}
    assert after["redirect_uri"] == custom and after["client_secret_set"] is True
    config = await services.config.oauth_view()
    assert (config.provider, config.tenant) == ("microsoft", "contoso.onmicrosoft.com")


@pytest.mark.parametrize("empty", [None, ""])
async def test_oauth_redirect_uri_null_or_empty_is_the_default(api: httpx.AsyncClient, empty: str | None) -> None:
    await oauth(api, {**MS, "redirect_uri": "https://mailgate.contoso.com/cb"})
    answer = await oauth(api, {"redirect_uri": empty})
    assert answer["redirect_uri"] == "http://localhost:8080/ddenterpriseapi/v2/oauth/redirect"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant": None}, "tenant"),  # Microsoft needs one
        ({"client_id": None}, "client_id"),
        ({"provider": None}, "provider"),
        ({"provider": "sandbox"}, "client_id"),  # another app registration: its client ID must be sent
    ],
)
async def test_oauth_merged_result_is_validated_and_nothing_stored(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    before = await oauth(api, MS)
    answer = await oauth(api, body, status=422)
    assert field in answer["fields"], answer
    assert (await api.get(f"{API}/oauth/config")).json() == before


async def test_oauth_secret_is_not_carried_to_another_provider(api: httpx.AsyncClient, services: Services) -> None:
    await oauth(api, MS)
    answer = await oauth(api, {"provider": "sandbox", "client_id": "sandbox-client"})
    assert answer["client_secret_set"] is False and answer["tenant"] == ""
    answer = await oauth(api, SANDBOX)
    assert answer["client_secret_set"] is True


async def test_the_schema_says_fields_left_out_are_kept(api: httpx.AsyncClient) -> None:
    document = (await api.get(f"{API}/openapi.json")).json()
    for name in ("EmailServerIn", "OAuthConfigIn"):
        schema = document["components"]["schemas"][name]
        assert "required" not in schema, name
        for field, spec in schema["properties"].items():
            assert "default" not in spec, f"{name}.{field}: a default contradicts 'left out keeps'"
    put = document["paths"][f"{API}/email/server"]["put"]
    assert "partial update" in put["description"]

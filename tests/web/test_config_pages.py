"""The OAuth page and the Email server page over HTTP: the guide's labels, saving, errors, secrets."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx

from mailgate.app import Services
from mailgate.configure import EmailServerUpdate, OAuthConfigUpdate
from mailgate.store.models import OAuthAccountRow
from mailgate.types import TokenStatus

from .conftest import EMAIL, OAUTH, UI, form_token

SECRET = "Sup3r-S3cret-Value~"
MS = {"provider": "microsoft", "tenant": "contoso.onmicrosoft.com", "client_id": "cid-42", "client_secret": SECRET}
GUIDE_LABELS = ["OAuth Provider", "Tenant", "Client ID", "Client Secret", "Authorized redirect URI", "Refresh token"]


def labelled_fields(html: str) -> dict[str, str]:
    """Label text -> the id it points to, for labels whose ``for`` names an element of the page."""
    found = {}
    for target, text in re.findall(r'<label for="([^"]+)">([^<]+)</label>', html):
        assert f'id="{target}"' in html, f"label {text!r} points at no element"
        found[text.strip()] = target
    return found


def value_of(html: str, field_id: str) -> str:
    match = re.search(rf'<input id="{field_id}"[^>]*?value="([^"]*)"', html, re.S)
    assert match, f"no input {field_id}"
    return match.group(1)


async def save_oauth(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    return await client.post(OAUTH, data={**fields, "csrf_token": await form_token(client)})


async def store_token(services: Services, *, account: str = "user@contoso.com", status: str = "valid") -> None:
    now = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    async with services.db.session() as session:
        session.add(
            OAuthAccountRow(
                id="default",
                provider="microsoft",
                client_id="cid-42",
                account=account,
                refresh_token_enc=services.box.encrypt("rt-very-secret-refresh-token"),
                access_token_enc=services.box.encrypt("at-very-secret-access-token"),
                status=status,
                status_reason="AADSTS700082: the refresh token has expired due to inactivity"
                if status != "valid"
                else "",
                authorized_at=now,
                last_refreshed_at=now,
                refresh_count=0,
            )
        )


async def test_oauth_page_has_the_guides_labels_and_defaults(admin: httpx.AsyncClient) -> None:
    page = (await admin.get(OAUTH)).text
    fields = labelled_fields(page)
    for label in GUIDE_LABELS:
        assert label in fields, label
    assert "Authorization URL" in fields and "Token URL" in fields
    assert value_of(page, "redirect_uri") == "http://localhost:8080/ddenterpriseapi/v2/oauth/redirect"
    assert re.search(r'<input id="authorization_url"[^>]*readonly', page)
    assert re.search(r'<input id="token_url"[^>]*readonly', page)
    assert re.search(r'<input id="refresh_token"[^>]*readonly', page)
    assert "Filled in automatically once OAuth has been used for the email server" in page
    assert "Not yet authorized" in page
    for option in ("Google", "Microsoft", "Sandbox (local test provider)"):
        assert f">{option}</option>" in page
    assert 'type="password"' in page and 'id="copy-redirect"' in page
    # The menu of the guide: Configuration > Server Parameters > Additional Parameters > OAuth.
    menu = page[page.index('aria-label="Main menu"') :]
    positions = [
        menu.index(word) for word in ("Configuration", "Server Parameters", "Additional Parameters", ">OAuth<")
    ]
    assert positions == sorted(positions) and "Email server" in menu


async def test_tenant_shows_only_for_microsoft(admin: httpx.AsyncClient) -> None:
    assert re.search(r'id="tenant-field" hidden', (await admin.get(OAUTH)).text)  # Google by default
    await save_oauth(admin, **MS)
    page = (await admin.get(OAUTH)).text
    assert not re.search(r'id="tenant-field" hidden', page)
    assert "single-tenant app" in page and "Directory (tenant) ID" in page


def shown_provider_hint(page: str) -> str:
    """The text of the provider hints not hidden (the one of the selected provider)."""
    hint = page[page.index('id="provider-hint"') : page.index("</p>", page.index('id="provider-hint"'))]
    shown = re.findall(r'<span data-provider-hint="[a-z]+">(.*?)</span>', hint, re.S)
    return " ".join(" ".join(shown).split())


async def test_the_provider_hint_names_the_selected_provider(admin: httpx.AsyncClient) -> None:
    assert shown_provider_hint((await admin.get(OAUTH)).text).startswith("Google: Gmail")  # Google by default
    await save_oauth(admin, **MS)
    assert shown_provider_hint((await admin.get(OAUTH)).text).startswith("Microsoft: Microsoft 365")
    await save_oauth(admin, provider="sandbox", client_id="sandbox-client", client_secret="sandbox-secret")
    hint = shown_provider_hint((await admin.get(OAUTH)).text)
    assert hint.startswith("Sandbox: the local test provider") and "Google or Microsoft account" in hint
    assert "sandbox-client" in hint and "Microsoft 365" not in hint


async def test_save_and_reload_keeps_values_and_never_shows_the_secret(admin: httpx.AsyncClient) -> None:
    response = await save_oauth(admin, **MS, redirect_uri="")
    assert response.status_code == 303 and response.headers["location"] == OAUTH
    page = (await admin.get(OAUTH)).text
    assert "Saved." in page
    assert SECRET not in page
    assert value_of(page, "client_secret") == ""
    assert value_of(page, "client_id") == "cid-42" and value_of(page, "tenant") == "contoso.onmicrosoft.com"
    assert value_of(page, "authorization_url") == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
    )
    assert re.search(r'<span id="secret-set-note">A secret is set — leave empty to keep it', page)
    # Saving again without a secret keeps it.
    await save_oauth(admin, **{**MS, "client_secret": "", "client_id": "cid-43"})
    assert SECRET not in (await admin.get(OAUTH)).text


async def test_errors_are_shown_by_the_fields_and_what_was_typed_is_kept(
    admin: httpx.AsyncClient, services: Services
) -> None:
    response = await save_oauth(
        admin, provider="microsoft", tenant="not a tenant!", client_id="", client_secret=SECRET, redirect_uri="ftp://x"
    )
    assert response.status_code == 422
    page = response.text
    assert re.search(r'id="tenant-error">.*Tenant must be a directory \(tenant\) ID', page)
    assert re.search(r'id="client_id-error">.*Client ID is required', page)
    assert re.search(r'id="redirect_uri-error">.*Authorized redirect URI must be an absolute URL', page)
    assert re.search(r'id="tenant"[^>]*aria-invalid="true"', page, re.S)
    assert 'id="error-summary"' in page and '<a href="#tenant">' in page
    assert value_of(page, "tenant") == "not a tenant!" and value_of(page, "redirect_uri") == "ftp://x"
    assert SECRET not in page and "type it again" in page
    assert (await services.config.oauth_view()).provider == ""  # nothing saved


async def test_text_is_escaped(admin: httpx.AsyncClient) -> None:
    response = await save_oauth(admin, provider="google", client_id='<script>alert("x")</script>')
    assert response.status_code == 303
    page = (await admin.get(OAUTH)).text
    assert '<script>alert("x")</script>' not in page and "&lt;script&gt;" in page


async def test_refresh_token_is_masked_with_status_and_account(admin: httpx.AsyncClient, services: Services) -> None:
    await save_oauth(admin, **MS)
    await store_token(services)
    page = (await admin.get(OAUTH)).text
    assert "rt-very-secret" not in page and "at-very-secret" not in page
    assert value_of(page, "refresh_token") == "\u2022" * 24
    assert "Valid, last refreshed at 2026-11-27 09:30 UTC" in page and "user@contoso.com" in page
    assert 'id="disconnect-form"' in page


async def test_reauthorization_needed_says_why(admin: httpx.AsyncClient, services: Services) -> None:
    await save_oauth(admin, **MS)
    await store_token(services, status=TokenStatus.REAUTHORIZATION_REQUIRED.value)
    page = (await admin.get(OAUTH)).text
    assert "Re-authorization needed: AADSTS700082" in page and "click Authorize" in page


async def test_disconnect_deletes_the_refresh_token(admin: httpx.AsyncClient, services: Services) -> None:
    await save_oauth(admin, **MS)
    await store_token(services)
    response = await admin.post(f"{OAUTH}/disconnect", data={"csrf_token": await form_token(admin)})
    assert response.status_code == 303
    page = (await admin.get(OAUTH)).text
    assert "Disconnected" in page and "Microsoft offers no revocation endpoint" in page
    assert not (await services.config.oauth_view()).refresh_token_set
    assert 'id="disconnect-form"' not in page


async def test_changing_the_client_drops_the_token_and_says_so(admin: httpx.AsyncClient, services: Services) -> None:
    await save_oauth(admin, **MS)
    await store_token(services)
    await save_oauth(admin, **{**MS, "client_id": "another-app"})
    assert "The refresh token was deleted" in (await admin.get(OAUTH)).text


async def test_email_page_fields_and_password_never_rendered(admin: httpx.AsyncClient, services: Services) -> None:
    page = (await admin.get(EMAIL)).text
    fields = labelled_fields(page)
    for label in ("Host", "Port", "Security", "Sender", "Username", "Authentication", "Password"):
        assert label in fields, label
    for option in ("STARTTLS", "SSL/TLS", "None", "OAuth"):
        assert f">{option}</option>" in page
    data = {
        "host": "smtp.example.com",
        "port": "587",
        "security": "starttls",
        "sender": "reports@example.com",
        "username": "reports@example.com",
        "authentication": "password",
        "password": "Mailbox-Pa55word",
        "action": "save",
    }
    response = await admin.post(EMAIL, data={**data, "csrf_token": await form_token(admin, EMAIL)})
    assert response.status_code == 303
    page = (await admin.get(EMAIL)).text
    assert "Saved." in page and "Mailbox-Pa55word" not in page and "A password is set" in page
    assert value_of(page, "host") == "smtp.example.com"
    assert (await services.config.email_server()).password == "Mailbox-Pa55word"


async def test_email_page_errors_keep_what_was_typed(admin: httpx.AsyncClient, services: Services) -> None:
    data = {"host": "bad host!", "port": "abc", "security": "starttls", "authentication": "oauth", "action": "save"}
    response = await admin.post(EMAIL, data={**data, "csrf_token": await form_token(admin, EMAIL)})
    assert response.status_code == 422
    assert re.search(r'id="host-error">.*Host is not a valid host name', response.text)
    assert re.search(r'id="port-error">.*Port must be a number', response.text)
    assert value_of(response.text, "host") == "bad host!" and value_of(response.text, "port") == "abc"
    assert (await services.config.email_server()).host == ""


async def test_sender_differing_from_the_consenting_account_is_warned(
    admin: httpx.AsyncClient, services: Services
) -> None:
    await save_oauth(admin, **MS)
    await store_token(services, account="user@contoso.com")
    await services.config.save_email_server(
        EmailServerUpdate(
            host="smtp.office365.com", port=587, security="starttls", authentication="oauth", sender="other@contoso.com"
        )
    )
    page = (await admin.get(EMAIL)).text
    assert re.search(r'id="sender-warning" role="status">Warning: the sender other@contoso.com differs', page)
    assert 'Authorized account:</strong> <span id="authorized-account">user@contoso.com' in page


async def test_authorize_saves_then_starts_the_consent_flow(admin: httpx.AsyncClient, services: Services) -> None:
    await services.config.save_oauth(
        OAuthConfigUpdate(provider="sandbox", client_id="sandbox-client", client_secret="s")
    )
    data = {
        "host": "127.0.0.1",
        "port": "8587",
        "security": "starttls",
        "authentication": "oauth",
        "action": "authorize",
    }
    response = await admin.post(EMAIL, data={**data, "csrf_token": await form_token(admin, EMAIL)})
    assert response.status_code == 303
    assert response.headers["location"] == f"{UI}/v2/oauth/authorize?return_to={EMAIL}"
    start = await admin.get(response.headers["location"])
    assert start.status_code == 302
    provider = urlsplit(start.headers["location"])
    assert provider.netloc == "127.0.0.1:8765"
    state = parse_qs(provider.query)["state"][0]
    # The provider sends the browser back with a refusal: the page says so and nothing changed.
    back = await admin.get(f"{UI}/v2/oauth/redirect", params={"error": "access_denied", "state": state})
    assert back.status_code == 303 and back.headers["location"] == EMAIL
    page = (await admin.get(EMAIL)).text
    assert "access_denied" in page and "nothing was changed" in page
    assert not (await services.config.oauth_view()).refresh_token_set
    assert "access_denied" not in (await admin.get(EMAIL)).text  # a flash is shown once


async def test_authorize_without_oauth_configuration_points_to_the_oauth_page(admin: httpx.AsyncClient) -> None:
    data = {"host": "smtp.gmail.com", "port": "587", "security": "starttls", "authentication": "oauth"}
    response = await admin.post(
        EMAIL, data={**data, "action": "authorize", "csrf_token": await form_token(admin, EMAIL)}
    )
    assert response.status_code == 303 and response.headers["location"] == OAUTH
    assert "OAuth is not configured yet." in (await admin.get(OAUTH)).text


async def test_a_forged_flash_is_not_shown(admin: httpx.AsyncClient) -> None:
    admin.cookies.set("mailgate_flash", "eyJsIjoiZXJyb3IiLCJ0IjoiUGhpc2gifQ.bad", path=UI)
    assert "Phish" not in (await admin.get(OAUTH)).text


async def test_test_connection_shows_the_failing_step_and_what_to_do(admin: httpx.AsyncClient) -> None:
    data = {"host": "127.0.0.1", "port": "1", "security": "starttls", "authentication": "none", "action": "test"}
    response = await admin.post(EMAIL, data={**data, "csrf_token": await form_token(admin, EMAIL)})
    assert response.status_code == 200
    page = response.text
    assert 'id="test-results"' in page and "Test connection:\n        failed" in page
    assert re.search(r'class="step fail" data-step="Connect"', page)
    assert "What to do:" in page


async def test_send_test_email_needs_an_address(admin: httpx.AsyncClient) -> None:
    data = {"host": "127.0.0.1", "port": "1", "security": "starttls", "authentication": "none", "action": "send"}
    response = await admin.post(EMAIL, data={**data, "send_to": "nobody", "csrf_token": await form_token(admin, EMAIL)})
    assert response.status_code == 422
    assert re.search(r'id="send_to-error">.*Send test email to must be an email address', response.text)

"""The setup guide, walked in headless Chromium against a real mailgate server and the sandbox provider."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

if not os.environ.get("CI"):
    pytest.importorskip("playwright")  # in CI a missing Playwright must fail, not skip

from playwright.async_api import Browser, Page, expect

from mailgate.configure import EmailServerUpdate, OAuthConfigUpdate
from mailgate.message import Limits, MessageRequest, NewMessage, from_request
from tests.conftest import ADMIN_PASSWORD

from .browser_stack import (
    CLIENT_ID,
    CLIENT_SECRET,
    PAGE_PROBLEMS,
    TENANT,
    Stack,
    new_page,
    running_stack,
    screenshot,
)

pytestmark = pytest.mark.browser


async def log_in(page: Page, stack: Stack) -> None:
    await page.goto(f"{stack.ui}/")
    await expect(page.get_by_role("heading", name="Log in to mailgate")).to_be_visible()
    await expect(page.get_by_label("User name")).to_have_value("admin")
    await page.get_by_label("Password").fill(ADMIN_PASSWORD)
    await page.get_by_label("Password").press("Enter")  # the keyboard is enough
    await expect(page.get_by_role("heading", name="OAuth", exact=True)).to_be_visible()


async def open_from_menu(page: Page, link: str) -> None:
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name=link, exact=True).click()
    await expect(page.get_by_role("heading", name=link, exact=True)).to_be_visible()


async def fill_oauth_page(page: Page, stack: Stack, provider: str, *, secret: str = CLIENT_SECRET) -> None:
    """Steps 2 to 8 of "Configure OAuth authentication", checking what the guide promises on the way."""
    # The provider's hint follows the select: Sandbox first (never the saved provider here), then this one.
    await page.get_by_label("OAuth Provider").select_option(label="Sandbox (local test provider)")
    await expect(page.locator("#provider-hint span:visible")).to_have_text(re.compile(r"^Sandbox: the local test"))
    await page.get_by_label("OAuth Provider").select_option(label=provider)
    await expect(page.locator("#provider-hint span:visible")).to_have_text(re.compile(f"^{provider}: "))
    tenant = page.get_by_label("Tenant", exact=True)
    authorization_url, token_url = page.get_by_label("Authorization URL"), page.get_by_label("Token URL")
    await expect(authorization_url).not_to_be_editable()
    await expect(token_url).not_to_be_editable()
    base = stack.sandbox.base_url
    if provider == "Microsoft":
        await expect(tenant).to_be_visible()
        await tenant.fill("not a tenant!")
        await tenant.blur()
        await expect(page.locator("#tenant-error")).to_contain_text("Tenant must be a directory (tenant) ID")
        await tenant.fill("contoso.onmicrosoft.com")
        await expect(authorization_url).to_have_value(f"{base}/contoso.onmicrosoft.com/oauth2/v2.0/authorize")
        await tenant.fill(TENANT)
        await expect(authorization_url).to_have_value(f"{base}/{TENANT}/oauth2/v2.0/authorize")
        await expect(token_url).to_have_value(f"{base}/{TENANT}/oauth2/v2.0/token")
        await expect(page.locator("#tenant-error")).to_be_hidden()
    else:
        await expect(tenant).to_be_hidden()
        await expect(authorization_url).to_have_value(f"{base}/o/oauth2/v2/auth")
        await expect(token_url).to_have_value(f"{base}/token")
    await page.get_by_label("Client ID").fill(CLIENT_ID)
    await page.get_by_label("Client Secret").fill(secret)
    redirect = page.get_by_label("Authorized redirect URI")
    await expect(redirect).to_have_value(stack.redirect_uri)
    await page.get_by_role("button", name="Copy").click()
    await expect(page.locator("#copy-status")).to_have_text(re.compile("Copied|Select"))
    await expect(page.get_by_label("Refresh token")).to_have_value("")
    await expect(page.get_by_label("Refresh token")).not_to_be_editable()


async def save_and_reload(page: Page, provider: str) -> None:
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.locator("#flash")).to_contain_text("Saved.")
    await page.reload()
    await expect(page.get_by_label("OAuth Provider")).to_have_value(provider.lower())
    await expect(page.get_by_label("Client ID")).to_have_value(CLIENT_ID)
    await expect(page.get_by_label("Client Secret")).to_have_value("")
    await expect(page.get_by_text("A secret is set — leave empty to keep it")).to_be_visible()
    assert CLIENT_SECRET not in await page.content()


async def set_up_email_server(page: Page, stack: Stack) -> None:
    await open_from_menu(page, "Email server")
    await page.get_by_label("Host", exact=True).fill(stack.sandbox.smtp_host)
    await page.get_by_label("Port", exact=True).fill(str(stack.sandbox.smtp_port))
    await page.get_by_label("Security").select_option(label="STARTTLS")
    await page.get_by_label("CA certificate file").fill(str(stack.sandbox.ca_file))
    await page.get_by_label("Authentication", exact=True).select_option(label="Password")
    await expect(page.get_by_label("Password", exact=True)).to_be_visible()
    await page.get_by_label("Authentication", exact=True).select_option(label="OAuth")
    await expect(page.get_by_label("Password", exact=True)).to_be_hidden()
    await expect(page.get_by_role("button", name="Authorize")).to_be_visible()


async def authorize(page: Page, decision: str) -> None:
    await page.get_by_role("button", name="Authorize").click()
    await expect(page.get_by_role("heading", name="Permissions requested")).to_be_visible()
    await screenshot(page, "sandbox-consent")
    await page.get_by_role("button", name=decision).click()
    await expect(page.get_by_role("heading", name="Email server", exact=True)).to_be_visible()


async def run_tests_from_the_page(page: Page, stack: Stack, name: str) -> None:
    await page.get_by_role("button", name="Test connection").click()
    results = page.locator("#test-results")
    await expect(results).to_contain_text("Test connection: all steps passed")
    for step in ("Connect", "TLS", "EHLO", "AUTH"):
        await expect(results.locator(f'li.step.pass[data-step="{step}"]').first).to_contain_text("✔")
    await expect(results.locator("li.step.fail")).to_have_count(0)
    await screenshot(page, f"{name}-email-server-tested")
    recipient = f"{name}@example.com"
    await page.get_by_label("Send test email to").fill(recipient)
    await page.get_by_role("button", name="Send test email").click()
    await expect(results).to_contain_text("Send test email: all steps passed")
    async with httpx.AsyncClient() as http:
        inbox = (await http.get(f"{stack.sandbox.base_url}/inbox.json")).json()
    assert any(recipient in message["rcpt_tos"] for message in inbox), inbox


async def walk_the_guide(browser: Browser, tmp_path: Path, provider: str, **sandbox_options: object) -> None:
    name = provider.lower()
    async with running_stack(tmp_path, **sandbox_options) as stack:
        page = await new_page(browser, stack)
        await log_in(page, stack)
        await open_from_menu(page, "Email server")
        await open_from_menu(page, "OAuth")
        await fill_oauth_page(page, stack, provider)
        await screenshot(page, f"{name}-oauth-filled")
        await save_and_reload(page, provider)
        await set_up_email_server(page, stack)
        await authorize(page, "Accept")
        account = stack.sandbox.config.default_account
        await expect(page.locator("#flash")).to_contain_text(f"Authorized as {account}")
        await expect(page.get_by_label("Username")).to_have_value(account)
        await expect(page.get_by_label("Sender")).to_have_value(account)
        await expect(page.locator("#sender-warning")).to_be_hidden()
        await run_tests_from_the_page(page, stack, name)
        await open_from_menu(page, "OAuth")
        await expect(page.get_by_label("Refresh token")).to_have_value(re.compile("^•+$"))
        await expect(page.locator("#token-status")).to_contain_text("Valid")
        await expect(page.locator("#authorized-account")).to_have_text(account)
        await screenshot(page, f"{name}-oauth-authorized")
        html = await page.content()
        view = await stack.services.config.oauth_view()
        assert view.refresh_token_set and view.provider == name
        assert CLIENT_SECRET not in html
        # Disconnect: revoked at the provider (the sandbox supports RFC 7009) and deleted here.
        await page.get_by_role("button", name="Disconnect").click()
        await expect(page.locator("#flash")).to_contain_text("revoked at the provider")
        await expect(page.get_by_label("Refresh token")).to_have_value("")
        await expect(page.locator("#token-status")).to_contain_text("Not yet authorized")
        assert not (await stack.services.config.oauth_view()).refresh_token_set
        assert PAGE_PROBLEMS[page] == []  # no script errors, nothing refused by the Content-Security-Policy
        await page.close()


async def test_microsoft_walk_through_the_guide(browser: Browser, tmp_path: Path) -> None:
    await walk_the_guide(browser, tmp_path, "Microsoft")


async def test_google_walk_through_the_guide(browser: Browser, tmp_path: Path) -> None:
    await walk_the_guide(browser, tmp_path, "Google", rotate_refresh_tokens=False, smtp_failure_style="google")


async def test_wrong_client_secret_gives_a_readable_error_after_consent(browser: Browser, tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        page = await new_page(browser, stack)
        await log_in(page, stack)
        await fill_oauth_page(page, stack, "Microsoft", secret="not-the-secret")
        await page.get_by_role("button", name="Save", exact=True).click()
        await set_up_email_server(page, stack)
        await authorize(page, "Accept")
        flash = page.locator("#flash")
        await expect(flash).to_have_attribute("role", "alert")
        await expect(flash).to_contain_text("Exchanging the authorization code failed")
        await expect(flash).to_contain_text("client secret")
        await screenshot(page, "error-wrong-client-secret")
        assert not (await stack.services.config.oauth_view()).refresh_token_set


async def test_denying_consent_changes_nothing_and_says_so(browser: Browser, tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        page = await new_page(browser, stack)
        await log_in(page, stack)
        await fill_oauth_page(page, stack, "Microsoft")
        await page.get_by_role("button", name="Save", exact=True).click()
        await set_up_email_server(page, stack)
        await page.get_by_role("button", name="Save", exact=True).click()
        before = (await stack.services.config.oauth_view(), await stack.services.config.email_server())
        await screenshot(page, "email-server-before-authorize")
        await authorize(page, "Deny")
        flash = page.locator("#flash")
        await expect(flash).to_contain_text("did not authorize mailgate: access_denied")
        await expect(flash).to_contain_text("nothing was changed")
        await screenshot(page, "error-consent-denied")
        assert (await stack.services.config.oauth_view(), await stack.services.config.email_server()) == before
        await open_from_menu(page, "OAuth")
        await expect(page.locator("#token-status")).to_contain_text("Not yet authorized")


async def test_a_form_posted_without_its_csrf_token_is_refused(browser: Browser, tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await stack.services.config.save_oauth(
            OAuthConfigUpdate(provider="google", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        )
        page = await new_page(browser, stack)
        await log_in(page, stack)
        await page.get_by_label("Client ID").fill("attacker-client")
        await page.locator('#oauth-form input[name="csrf_token"]').evaluate("input => input.remove()")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
        await expect(page.locator("#refused-message")).to_contain_text("security token (CSRF)")
        await screenshot(page, "error-csrf-refused")
        assert (await stack.services.config.oauth_view()).client_id == CLIENT_ID


async def test_pages_at_narrow_width_and_keyboard_use(browser: Browser, tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        page = await new_page(browser, stack)
        await page.goto(f"{stack.ui}/")
        await screenshot(page, "login")
        await log_in(page, stack)
        await screenshot(page, "oauth-empty")
        # Field errors, as the browser shows them.
        await page.get_by_label("OAuth Provider").select_option(label="Microsoft")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#error-summary")).to_be_focused()
        await expect(page.locator("#client_id-error")).to_contain_text("Client ID is required")
        await expect(page.get_by_label("OAuth Provider")).to_have_value("microsoft")
        await screenshot(page, "oauth-errors")
        # Enter in a field of the Email server page saves; it does not press Authorize.
        await open_from_menu(page, "Email server")
        await page.get_by_label("Authentication", exact=True).select_option(label="OAuth")
        await page.get_by_label("Host", exact=True).fill("smtp.example.com")
        await page.get_by_label("Host", exact=True).press("Enter")
        await expect(page.locator("#flash")).to_contain_text("Saved.")
        await screenshot(page, "email-server")
        # Tab order starts with the skip link, then the header and the menu.
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        await page.set_viewport_size({"width": 390, "height": 844})
        for link, shot in (("OAuth", "narrow-oauth"), ("Email server", "narrow-email-server")):
            await open_from_menu(page, link)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{link} page scrolls sideways at 390 px ({width})"
            await screenshot(page, shot)


REPORTS = "reports@sandbox.test"


async def test_accounts_page_add_authorize_and_delete(browser: Browser, tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        services = stack.services
        await services.config.save_oauth(
            OAuthConfigUpdate(provider="microsoft", tenant=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        )
        page = await new_page(browser, stack)
        await log_in(page, stack)
        await open_from_menu(page, "Accounts")
        table = page.locator("#accounts")
        await expect(table.locator("tbody tr")).to_have_count(1)
        await expect(page.locator("#account-default")).to_contain_text("Not authorized")
        await expect(page.get_by_role("button", name="Delete default")).to_have_count(0)  # default stays

        # A name that cannot be one is refused on the page, next to the field.
        await page.get_by_label("Name", exact=True).fill("Reports Team")
        await page.get_by_role("button", name="Add", exact=True).click()
        await expect(page.locator("#name-error")).to_contain_text("Name must be 1-64 characters")
        await page.get_by_label("Name", exact=True).fill("reports")
        await page.get_by_role("button", name="Add", exact=True).click()
        # The new account has default's OAuth client; its Email server page opens, labelled with the account.
        await expect(page.get_by_role("heading", name="Email server", exact=True)).to_be_visible()
        await expect(page.locator("#account-name")).to_have_text("Account reports")
        await expect(page.locator("#flash")).to_contain_text("Account reports added")
        await page.get_by_label("Host", exact=True).fill(stack.sandbox.smtp_host)
        await page.get_by_label("Port", exact=True).fill(str(stack.sandbox.smtp_port))
        await page.get_by_label("CA certificate file").fill(str(stack.sandbox.ca_file))
        await page.get_by_label("Also sends as").fill("*@reports.example.com")
        await page.get_by_label("Authentication", exact=True).select_option(label="OAuth")
        await page.get_by_role("button", name="Authorize").click()
        # The sandbox's consent page: sign in as the account's own mailbox.
        await expect(page.get_by_role("heading", name="Permissions requested")).to_be_visible()
        await page.get_by_label("Account").fill(REPORTS)
        await page.get_by_role("button", name="Accept").click()
        await expect(page.get_by_role("heading", name="Email server", exact=True)).to_be_visible()
        await expect(page.locator("#flash")).to_contain_text(f"Authorized as {REPORTS} for account reports")
        await expect(page.get_by_label("Username")).to_have_value(REPORTS)
        await screenshot(page, "account-email-server-authorized")
        # Its OAuth page shows its consent; default's is untouched.
        await page.locator("main").get_by_role("link", name="OAuth", exact=True).first.click()
        await expect(page.locator("#account-name")).to_have_text("Account reports")
        await expect(page.locator("#authorized-account")).to_have_text(REPORTS)
        assert (await services.config.oauth_view()).refresh_token_set is False
        view = await services.config.oauth_view("reports")
        assert view.account == REPORTS and view.client_id == CLIENT_ID

        # Listed, with a message held for it (queued while its server is unreachable for the worker-less stack).
        await services.config.save_email_server(
            EmailServerUpdate(host="smtp.example.com", authentication="none"), "default"
        )
        message, _ = await services.outbox.enqueue(_message(REPORTS), account_id="reports")
        await open_from_menu(page, "Accounts")
        row = page.locator("#account-reports")
        await expect(row).to_contain_text(REPORTS)
        await expect(row).to_contain_text("Valid")
        await expect(row).to_contain_text("*@reports.example.com")
        await expect(row.locator("td").nth(3)).to_have_text("1")  # queued
        await screenshot(page, "accounts")
        # Delete asks first when mail is waiting; Cancel changes nothing, "Delete anyway" fails the message.
        await page.get_by_role("button", name="Delete reports").click()
        await expect(page.get_by_role("heading", name="Delete account reports?")).to_be_visible()
        await expect(page.locator("#delete-warning")).to_contain_text("1 message(s) queued")
        await screenshot(page, "account-delete-confirm")
        await page.get_by_role("link", name="Cancel").click()
        await expect(page.locator("#account-reports")).to_be_visible()
        await page.get_by_role("button", name="Delete reports").click()
        await page.get_by_role("button", name="Delete anyway").click()
        await expect(page.locator("#flash")).to_contain_text("Account reports deleted and its refresh token revoked")
        await expect(page.locator("#flash")).to_contain_text("1 message(s) waiting for it were marked failed")
        await expect(page.locator("#account-reports")).to_have_count(0)
        shown = await services.outbox.get(message.id)
        assert shown.status == "failed" and shown.last_error_code == "account_deleted"
        # No script errors, nothing refused by the Content-Security-Policy (the refused name answered 422).
        assert [p for p in PAGE_PROBLEMS[page] if "status of 422" not in p] == []
        # The guide's pages are still default's, at their URLs.
        await open_from_menu(page, "OAuth")
        await expect(page).to_have_url(re.compile(r"/ddenterpriseapi/configuration/oauth$"))
        await expect(page.locator("#account-name")).to_have_count(0)
        await page.close()


def _message(sender: str) -> NewMessage:
    request = MessageRequest(sender=sender, to=["bob@example.com"], subject="waiting", text="x")
    return from_request(request, Limits(default_sender=sender, max_bytes=1 << 20))

"""The OAuth page's grants walked in headless Chromium: Application (client credentials) with a secret, then with a
certificate, and a Google service account, each ending with a test message delivered through the sandbox."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("playwright")  # in CI a missing Playwright must fail, not skip

from playwright.async_api import Browser, Page, expect

from mailgate.configure import EmailServerUpdate

from .browser_stack import CLIENT_ID, CLIENT_SECRET, PAGE_PROBLEMS, TENANT, Stack, new_page, running_stack
from .test_browser import log_in, open_from_menu, run_tests_from_the_page

pytestmark = pytest.mark.browser
MAILBOX = "app@sandbox.test"


async def _server(stack: Stack, account: str = "default") -> None:
    update = EmailServerUpdate(
        host=stack.sandbox.smtp_host,
        port=stack.sandbox.smtp_port,
        security="starttls",
        authentication="oauth",
        ca_file=str(stack.sandbox.ca_file),
    )
    await stack.services.accounts.save_email_server(account, update)


async def _grant_fields_shown(page: Page, *, code: bool, certificate: bool, key: bool) -> None:
    for label, shown in (
        ("Authorized redirect URI", code),
        ("Refresh token", code),
        ("Client ID", not key),
        ("Client Secret", not key),
        ("Certificate", certificate),
        ("Private key", certificate),
        ("Service account key", key),
        ("Mailbox", not code),
    ):
        field = page.get_by_label(label, exact=True)
        await (expect(field).to_be_visible() if shown else expect(field).to_be_hidden())


async def test_each_grant_on_the_oauth_page(browser: Browser, tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        page = await new_page(browser, stack)
        await log_in(page, stack)
        await open_from_menu(page, "OAuth")
        grant = page.get_by_label("Grant", exact=True)
        await expect(grant).to_have_value("authorization_code")
        await _grant_fields_shown(page, code=True, certificate=False, key=False)

        # Microsoft, Application (client credentials) with a secret; "common" is refused with the reason.
        await page.get_by_label("OAuth Provider").select_option(label="Microsoft")
        await grant.select_option(label="Application (client credentials)")
        await _grant_fields_shown(page, code=False, certificate=True, key=False)
        await page.get_by_label("Tenant", exact=True).fill("common")
        await page.get_by_label("Client ID").fill(CLIENT_ID)
        await page.get_by_label("Client Secret").fill(CLIENT_SECRET)
        await page.get_by_label("Mailbox", exact=True).fill(MAILBOX)
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#tenant-error")).to_contain_text("AADSTS9001023")
        await expect(grant).to_have_value("client_credentials")  # what was typed is kept
        await _grant_fields_shown(page, code=False, certificate=True, key=False)
        await page.get_by_label("Tenant", exact=True).fill(TENANT)
        await page.get_by_label("Client Secret").fill(CLIENT_SECRET)
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#flash")).to_contain_text("No consent is needed")
        await expect(page.locator("#app-token-status")).to_contain_text("No access token yet")
        await _server(stack)
        await open_from_menu(page, "Email server")
        await run_tests_from_the_page(page, stack, "client-credentials")
        await open_from_menu(page, "OAuth")
        await expect(page.locator("#app-token-status")).to_contain_text("Valid")
        assert CLIENT_SECRET not in await page.content()

        # The same app registration with a certificate instead of the secret.
        cert = stack.sandbox.register_app_certificate(CLIENT_ID)
        (tmp_path / "cert.pem").write_text(cert["certificate_pem"])
        (tmp_path / "key.pem").write_text(cert["private_key_pem"])
        await page.get_by_label("Certificate", exact=True).set_input_files(tmp_path / "cert.pem")
        await page.get_by_label("Private key", exact=True).set_input_files(tmp_path / "key.pem")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#flash")).to_contain_text("Saved.")
        await expect(page.locator("#certificate-thumbprint")).to_have_text(cert["thumbprint"])
        view = await stack.services.config.oauth_view()
        assert view.certificate_set and view.grant == "client_credentials"
        await open_from_menu(page, "Email server")
        await run_tests_from_the_page(page, stack, "certificate")
        assert "PRIVATE KEY" not in await page.content()

        # Google, a service account with domain-wide delegation, on another account's OAuth page.
        key = stack.sandbox.register_service_account(mailboxes=(MAILBOX,))
        (tmp_path / "key.json").write_text(json.dumps(key))
        await page.goto(f"{stack.ui}/configuration/accounts/gmail/oauth")
        await page.get_by_label("OAuth Provider").select_option(label="Google")
        await expect(grant.locator("option[value=client_credentials]")).to_be_hidden()
        await grant.select_option(label="Service account (domain-wide delegation)")
        await _grant_fields_shown(page, code=False, certificate=False, key=True)
        await page.get_by_label("Service account key", exact=True).set_input_files(tmp_path / "key.json")
        await page.get_by_label("Mailbox", exact=True).fill(MAILBOX)
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#flash")).to_contain_text("Saved.")
        await expect(page.locator("#service-account-email")).to_have_text(key["client_email"])
        assert key["private_key"].splitlines()[3] not in await page.content()
        await _server(stack, "gmail")
        await page.goto(f"{stack.ui}/configuration/accounts/gmail/email-server")
        # No consent to give: no Authorize button, a hint pointing at the OAuth page instead.
        await expect(page.locator("#authorize")).to_have_count(0)
        await expect(page.locator("#app-only-hint")).to_contain_text("app-only identity")
        await run_tests_from_the_page(page, stack, "service-account")
        # No script errors, nothing refused by the Content-Security-Policy (the refused save answered 422 on purpose).
        assert [p for p in PAGE_PROBLEMS[page] if "status of 422" not in p] == []
        await page.close()

"""The Accounts page walked in headless Chromium (issue 21): add an account with default's app registration,
authorize it as another mailbox through the same redirect URI, see it listed, delete it with mail waiting."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("playwright")  # in CI a missing Playwright must fail, not skip

from playwright.async_api import Browser, expect

from mailgate.configure import EmailServerUpdate, OAuthConfigUpdate

from .browser_stack import (
    CLIENT_ID,
    CLIENT_SECRET,
    PAGE_PROBLEMS,
    TENANT,
    chromium,
    new_page,
    running_stack,
    screenshot,
)
from .test_browser import log_in, open_from_menu

pytestmark = pytest.mark.browser
REPORTS = "reports@sandbox.test"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


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


def _message(sender: str) -> object:
    from mailgate.outbox import Limits, MessageRequest, from_request

    request = MessageRequest(sender=sender, to=["bob@example.com"], subject="waiting", text="x")
    return from_request(request, Limits(default_sender=sender, max_bytes=1 << 20))

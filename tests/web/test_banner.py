"""The "Needs attention" banner in headless Chromium: on every admin page while a problem exists, escaped,
each item linking to the page that fixes it, and gone once both problems are fixed from the pages."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("playwright")  # in CI a missing Playwright must fail, not skip

from playwright.async_api import Browser, expect

from mailgate.configure import EmailServerUpdate, OAuthConfigUpdate
from mailgate.store.models import OAuthAccountRow

from .browser_stack import CLIENT_ID, CLIENT_SECRET, PAGE_PROBLEMS, TENANT, new_page, running_stack
from .test_browser import authorize, log_in, open_from_menu

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=\"document.title='owned'\">"


async def test_banner_on_every_page_links_to_the_fix_and_goes_away(browser: Browser, tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        services = stack.services
        soon = (datetime.now(UTC) + timedelta(days=3)).date()
        await services.config.save_oauth(
            OAuthConfigUpdate(
                provider="microsoft",
                tenant=TENANT,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                client_secret_expires_on=soon.isoformat(),
            )
        )
        await services.config.save_email_server(
            EmailServerUpdate(
                host=stack.sandbox.smtp_host,
                port=stack.sandbox.smtp_port,
                security="starttls",
                authentication="oauth",
                ca_file=str(stack.sandbox.ca_file),
            )
        )
        # A grant the provider refused, with a reason carrying markup (provider text is not ours to trust).
        async with services.db.session() as session:
            session.add(
                OAuthAccountRow(
                    id="default",
                    provider="microsoft",
                    client_id=CLIENT_ID,
                    account="user@sandbox.test",
                    refresh_token_enc=services.box.encrypt("dead"),
                    status="reauthorization_required",
                    status_reason=f"invalid_grant {HOSTILE}",
                    status_since=datetime.now(UTC),
                    authorized_at=datetime.now(UTC) - timedelta(days=30),
                )
            )
        page = await new_page(browser, stack)
        await log_in(page, stack)
        banner = page.locator("#attention")
        await expect(banner.get_by_role("heading", name="Needs attention")).to_be_visible()
        items = banner.locator("li")
        await expect(items).to_have_count(2)
        revoked = banner.locator('li[data-code="reauthorization_required"]')
        await expect(revoked).to_contain_text(HOSTILE)  # shown as text
        await expect(banner.locator("img")).to_have_count(0)
        assert await page.title() != "owned"
        secret = banner.locator('li[data-code="client_secret_expiring_7d"]')
        await expect(secret).to_contain_text(f"expires on {soon.isoformat()}, in 3 days")
        for link in ("Email server", "Accounts", "Relay"):
            await open_from_menu(page, link)
            await expect(items).to_have_count(2)

        # The secret's item leads to the OAuth page, where a renewed secret's date is entered.
        await secret.get_by_role("link", name="Open the page that fixes it").click()
        await expect(page.get_by_role("heading", name="OAuth", exact=True)).to_be_visible()
        later = (datetime.now(UTC) + timedelta(days=700)).date()
        await page.get_by_label("Secret expires on").fill(later.isoformat())
        await page.get_by_role("button", name="Save").click()
        await expect(page.locator("#flash")).to_contain_text("Saved.")
        await expect(page.get_by_label("Secret expires on")).to_have_value(later.isoformat())
        await expect(items).to_have_count(1)

        # The grant's item leads to the Email server page, where Authorize ends it.
        await revoked.get_by_role("link", name="Open the page that fixes it").click()
        await expect(page.get_by_role("heading", name="Email server", exact=True)).to_be_visible()
        await authorize(page, "Accept")
        await expect(page.locator("#flash")).to_contain_text("Authorized")
        await expect(banner).to_have_count(0)
        assert PAGE_PROBLEMS[page] == []  # no script error, no Content-Security-Policy refusal

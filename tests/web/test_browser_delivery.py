"""The Email server page's Delivery selector (issue 24), walked in headless Chromium against a real mailgate
server and the sandbox provider: Microsoft Graph chosen, consented, tested; then back to SMTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("playwright")  # in CI a missing Playwright must fail, not skip

from playwright.async_api import Browser, expect

from mailgate.configure import OAuthConfigUpdate

from .browser_stack import (
    CLIENT_ID,
    CLIENT_SECRET,
    PAGE_PROBLEMS,
    TENANT,
    new_page,
    running_stack,
    screenshot,
)
from .test_browser import log_in, open_from_menu

pytestmark = pytest.mark.browser


async def test_delivery_selector_graph_consent_test_and_back_to_smtp(browser: Browser, tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await stack.services.config.save_oauth(
            OAuthConfigUpdate(provider="microsoft", tenant=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        )
        page = await new_page(browser, stack)
        await log_in(page, stack)
        await open_from_menu(page, "Email server")
        host = page.get_by_label("Host", exact=True)
        await expect(host).to_be_visible()
        # Microsoft Graph: no SMTP server fields; OAuth is the only authentication.
        await page.get_by_label("Delivery", exact=True).select_option(label="Microsoft Graph (HTTP)")
        await expect(host).to_be_hidden()
        await expect(page.get_by_label("Authentication", exact=True)).to_have_value("oauth")
        await expect(page.locator("#delivery-reauth")).to_be_hidden()  # nothing authorized yet
        await page.get_by_role("button", name="Authorize").click()
        await expect(page.get_by_role("heading", name="Permissions requested")).to_be_visible()
        await expect(page.get_by_text("https://graph.microsoft.com/Mail.Send")).to_be_visible()
        await expect(page.get_by_text("https://outlook.office.com/SMTP.Send")).to_have_count(0)
        await page.get_by_role("button", name="Accept").click()
        await expect(page.get_by_role("heading", name="Email server", exact=True)).to_be_visible()
        await expect(page.get_by_label("Delivery", exact=True)).to_have_value("graph")
        await expect(page.locator("#token-status")).to_contain_text("Valid")
        await page.get_by_role("button", name="Test connection").click()
        results = page.locator("#test-results")
        await expect(results).to_contain_text("Test connection: all steps passed")
        for step in ("Token", "Permission"):
            await expect(results.locator(f'li.step.pass[data-step="{step}"]')).to_contain_text("✔")
        await screenshot(page, "graph-delivery-tested")
        # Back to SMTP: the page says the consent must be given again, and the token status follows on Save.
        await page.get_by_label("Delivery", exact=True).select_option(label="SMTP")
        await expect(host).to_be_visible()
        await expect(page.locator("#delivery-reauth")).to_be_visible()
        await host.fill(stack.sandbox.smtp_host)
        await page.get_by_label("Port", exact=True).fill(str(stack.sandbox.smtp_port))
        await page.get_by_label("CA certificate file").fill(str(stack.sandbox.ca_file))
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#flash")).to_contain_text("Saved.")
        await expect(page.locator("#token-status")).to_contain_text("delivery method changed from graph to smtp")
        server = await stack.services.config.email_server()
        assert server.delivery.value == "smtp"
        assert PAGE_PROBLEMS[page] == []
        await page.close()

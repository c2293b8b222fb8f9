"""The Alerts and Audit log pages in headless Chromium: reached from the Configuration menu, a refused webhook
URL named at its field, "Send test alert" showing what happened on each channel, the recent notifications, the
fallback server's password never shown, the audit entries; no console error (CSP), no sideways scrolling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("playwright")  # in CI a missing Playwright must fail, not skip

from playwright.async_api import Browser, expect

from ..web.browser_stack import PAGE_PROBLEMS, new_page, running_stack, screenshot
from ..web.test_browser import log_in, open_from_menu
from .receiver import WebhookReceiver

pytestmark = pytest.mark.browser

PASSWORD = "fallback-Pa55word"


async def test_alerts_page_settings_test_alert_and_audit_log(
    browser: Browser, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    async with running_stack(tmp_path) as stack:
        page = await new_page(browser, stack)
        await log_in(page, stack)
        await open_from_menu(page, "Alerts")
        await expect(page.locator("#no-notifications")).to_be_visible()

        await page.get_by_label("Webhook URL").fill("http://hooks.example.com/mailgate")
        await page.get_by_role("button", name="Save").click()
        await expect(page.locator("#webhook_url-error")).to_contain_text("Webhook URL must use https://")
        await expect(page.locator("#error-summary")).to_be_visible()

        await receiver.up()
        await page.get_by_label("Webhook URL").fill(receiver.url)
        await page.get_by_label("Email to").fill("ops@example.com")
        await page.get_by_label("Host").fill("127.0.0.1")
        await page.get_by_label("Port").fill("9")  # nothing listens there: the email part fails, and says why
        await page.get_by_label("Security").select_option(label="None")
        await page.get_by_label("From address").fill("mailgate@example.com")
        await page.get_by_label("Username").fill("alerts")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Send test alert").click()
        results = page.locator("#test-results")
        await expect(results.locator("[data-channel=webhook]")).to_contain_text("sent")
        await expect(results.locator("[data-channel=email]")).to_contain_text("failed")
        await expect(results.locator("[data-channel=email]")).to_contain_text("fallback SMTP server 127.0.0.1")
        assert [p["event"] for p in receiver.received] == ["test"]
        await expect(page.locator("#recent-notifications tbody tr")).to_have_count(1)
        await screenshot(page, "alerts")
        assert PASSWORD not in await page.content()
        await expect(page.get_by_label("Password")).to_have_value("")
        await expect(page.locator("#smtp_password-hint")).to_contain_text("A password is set")
        await page.set_viewport_size({"width": 390, "height": 844})
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the Alerts page scrolls sideways at 390 px ({width})"
        await page.set_viewport_size({"width": 1280, "height": 800})

        await open_from_menu(page, "Audit log")
        rows = page.locator("#audit-entries tbody tr")
        await expect(rows.first).to_contain_text("alerts.changed")
        await expect(rows.first).to_contain_text("user admin")
        await expect(rows.first).to_contain_text("fallback_smtp.password")
        await expect(page.locator("#audit-entries")).to_contain_text("login.succeeded")
        assert PASSWORD not in await page.content()
        await screenshot(page, "audit")
        # The refused form's 422 is logged by Chromium as a failed load; nothing else may be.
        assert [p for p in PAGE_PROBLEMS[page] if "status of 422" not in p] == []

"""The Relay page in headless Chromium: reached from the Configuration menu, add shows the password once, the
list and remove, and no sideways scrolling on a phone-sized screen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("playwright")  # in CI a missing Playwright must fail, not skip

from playwright.async_api import Browser, expect

from ..web.browser_stack import PAGE_PROBLEMS, new_page, running_stack, screenshot
from ..web.test_browser import log_in, open_from_menu

pytestmark = pytest.mark.browser


async def test_relay_page_add_list_remove(browser: Browser, tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        page = await new_page(browser, stack)
        await log_in(page, stack)
        await open_from_menu(page, "Relay")
        await expect(page.locator("#relay-off")).to_be_visible()
        await expect(page.locator("#no-users")).to_be_visible()
        await page.get_by_label("User name").fill("grafana")
        await page.get_by_label("Also sends as").fill("alerts@example.com, *@reports.example.com")
        await page.get_by_role("button", name="Add relay user").click()
        password = await page.locator("#created-password").inner_text()
        assert await stack.services.relay_users.authenticate("grafana", password) is not None
        row = page.locator("#relay-users tbody tr", has_text="grafana")
        await expect(row).to_contain_text("*@reports.example.com")
        await expect(row).to_contain_text("never")
        await screenshot(page, "relay")
        await page.set_viewport_size({"width": 390, "height": 844})
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the Relay page scrolls sideways at 390 px ({width})"
        await page.set_viewport_size({"width": 1280, "height": 800})
        await page.reload()
        await expect(page.locator("#created-password")).to_have_count(0)  # shown once
        await page.get_by_label("User name").fill("bad name")
        await page.get_by_role("button", name="Add relay user").click()
        await expect(page.locator("#name-error")).to_contain_text("User name must be")
        await page.get_by_role("button", name="Remove grafana").click()
        await expect(page.locator("#flash")).to_contain_text("Relay user grafana removed")
        await expect(page.locator("#no-users")).to_be_visible()
        # The refused form's 422 is logged by Chromium as a failed load; nothing else may be.
        assert [p for p in PAGE_PROBLEMS[page] if "status of 422" not in p] == []

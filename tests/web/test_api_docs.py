"""The REST API documentation page (``/v2/docs``): Swagger UI served from the package, under the admin pages'
Content-Security-Policy, rendering in headless Chromium with no request leaving loopback."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

if not os.environ.get("CI"):
    pytest.importorskip("playwright")  # in CI a missing Playwright must fail, not skip

from playwright.async_api import Request, Route, expect

from mailgate.web.pages import PAGE_HEADERS

from .browser_stack import PAGE_PROBLEMS, chromium, new_page, running_stack, screenshot

DOCS = "/ddenterpriseapi/v2/docs"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


async def test_docs_page_has_the_admin_pages_headers_and_no_outside_url(web: httpx.AsyncClient) -> None:
    r = await web.get(DOCS)
    assert r.status_code == 200, r.text
    for name, value in PAGE_HEADERS.items():
        assert r.headers[name] == value, name
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "<script>" not in r.text  # no inline script: the policy would refuse it
    for url in re.findall(r'(?:src|href)="([^"]+)"', r.text):
        assert url.startswith("/ddenterpriseapi/"), url
        asset = await web.get(url)
        assert asset.status_code == 200 and asset.content, url


def test_vendored_swagger_ui_is_packaged_with_its_license() -> None:
    import tomllib

    import mailgate

    swagger = Path(mailgate.__file__).parent / "web" / "static" / "swagger"
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE"):
        assert (swagger / name).is_file(), name
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    package_data = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    assert "web/static/swagger/*" in package_data["mailgate"]


@pytest.mark.browser
async def test_docs_render_offline_under_the_csp(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack, chromium() as browser:
        page = await new_page(browser, stack)
        seen: list[str] = []
        outside: list[str] = []

        async def loopback_only(route: Route) -> None:
            # No internet here: refuse the rest at once, and remember it (a CDN link shows up here).
            if urlsplit(route.request.url).hostname in LOOPBACK:
                await route.continue_()
            else:
                outside.append(route.request.url)
                await route.abort()

        def record(request: Request) -> None:
            seen.append(request.url)

        page.on("request", record)
        await page.context.route(re.compile(r"^(?!data:)"), loopback_only)
        response = await page.goto(stack.base_url + DOCS)
        assert response is not None and response.status == 200
        assert response.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]
        operation = page.locator(".opblock-post").filter(has_text="/ddenterpriseapi/v2/email/messages").first
        await expect(operation).to_be_visible()
        await expect(page.locator(".opblock-put").filter(has_text="/ddenterpriseapi/v2/email/server")).to_be_visible()
        # The request body of POST /email/messages, with its attachments (a $ref Swagger UI must resolve).
        await operation.locator(".opblock-summary").click()
        await expect(operation.locator(".body-param__example, .highlight-code").first).to_contain_text("content_base64")
        await screenshot(page, "api-docs")
        assert not outside, f"requests left loopback: {outside}"
        assert any(url.endswith("/swagger/swagger-ui-bundle.js") for url in seen), seen
        assert not PAGE_PROBLEMS[page], PAGE_PROBLEMS[page]  # a CSP refusal shows as a console error

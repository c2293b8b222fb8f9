"""A real mailgate server (uvicorn on a free loopback port) wired to a real sandbox provider, and headless
Chromium driven by Playwright, for the browser tests of the admin pages."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from mailgate.app import Services, build_services
from mailgate.config import Settings
from mailgate.sandbox import Sandbox, SandboxClient, SandboxConfig
from mailgate.web import create_app
from tests.conftest import ADMIN_PASSWORD, require_component

CHROMIUM = Path("/usr/bin/chromium")
# Without the networking flags Chromium keeps trying to reach outside hosts (see shared/TESTING.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
CLIENT_ID = "mailgate-browser-test"
CLIENT_SECRET = "browser-test-secret"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@dataclass
class Stack:
    """Where everything runs."""

    sandbox: Sandbox
    services: Services
    base_url: str

    @property
    def ui(self) -> str:
        return f"{self.base_url}/ddenterpriseapi"

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/ddenterpriseapi/v2/oauth/redirect"


@asynccontextmanager
async def running_stack(tmp_path: Path, **sandbox_options: Any) -> AsyncIterator[Stack]:
    """Sandbox first (its ports go into the providers file), then mailgate on a port chosen beforehand so
    that ``base_url`` (hence the default redirect URI, registered at the sandbox) names it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    base_url = f"http://localhost:{port}"
    client = SandboxClient(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=(f"{base_url}/ddenterpriseapi/v2/oauth/redirect",),
        name="mailgate (browser test)",
    )
    sandbox = Sandbox(SandboxConfig(http_port=0, smtp_port=0, clients=(client,), **sandbox_options))
    await sandbox.start()
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    services: Services | None = None
    try:
        providers = tmp_path / "providers.toml"
        providers.write_text(sandbox.providers_toml("microsoft", "google"), encoding="utf-8")
        settings = Settings(
            data_dir=tmp_path / "data", admin_password=ADMIN_PASSWORD, base_url=base_url, providers_file=providers
        )
        services = await build_services(settings)
        await services.admins.ensure_admin(ADMIN_PASSWORD)
        config = uvicorn.Config(
            create_app(services), lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=2
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        # startup() + main_loop() rather than serve(): serve() would take over the process's signals.
        await server.startup(sockets=[sock])
        task = asyncio.get_running_loop().create_task(server.main_loop())
        yield Stack(sandbox=sandbox, services=services, base_url=base_url)
    finally:
        if server is not None:
            server.should_exit = True
            if task is not None:
                await task
            await server.shutdown(sockets=[sock])
        sock.close()
        if services is not None:
            await services.aclose()
        await sandbox.stop()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless; missing it fails under CI (``CI`` set) and skips elsewhere."""
    require_component(CHROMIUM.exists(), f"Chromium ({CHROMIUM})")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, stack: Stack) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, base_url=stack.base_url)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.base_url)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # Only mailgate's pages: the sandbox's own pages (its favicon...) are not under test here.
        if message.type == "error" and page.url.startswith(stack.base_url):
            problems.append(f"{message.text} ({message.location.get('url', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    PAGE_PROBLEMS[page] = problems
    return page


#: Console errors (a Content-Security-Policy refusal, a script error) seen by each page.
PAGE_PROBLEMS: dict[Page, list[str]] = {}


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

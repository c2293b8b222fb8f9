"""An end-to-end harness: mailgate (services + ASGI API) wired to a real sandbox provider on loopback."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from mailgate.app import Services
from mailgate.sandbox import Sandbox

from ..sandbox.helpers import consent_id_of

API = "/ddenterpriseapi/v2"
SECRET = "sandbox-secret"


@dataclass
class Clock:
    """mailgate's clock, moved by hand: token expiry without sleeping."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Harness:
    services: Services
    sandbox: Sandbox
    api: httpx.AsyncClient
    clock: Clock

    async def configure(
        self, provider: str = "microsoft", *, secret: str = SECRET, tenant: str = "", **server: Any
    ) -> None:
        """The OAuth page for the sandbox's client, and the Email server page for its SMTP server (``server``
        overrides or adds fields, e.g. ``authentication="password"``)."""
        body: dict[str, Any] = {"provider": provider, "client_id": "sandbox-client", "client_secret": secret}
        if provider != "google":
            body["tenant"] = tenant or "contoso.onmicrosoft.com"
        r = await self.api.put(f"{API}/oauth/config", json=body)
        assert r.status_code == 200, r.text
        r = await self.api.put(
            f"{API}/email/server",
            json={
                "host": "127.0.0.1",
                "port": self.sandbox.smtp_port,
                "security": "starttls",
                "authentication": "oauth",
                "ca_file": str(self.sandbox.ca_file),
                **server,
            },
        )
        assert r.status_code == 200, r.text

    async def consent(
        self, *, accept: bool = True, account: str = "alice@sandbox.test", start_at: str = f"{API}/oauth/authorize"
    ) -> str:
        """Start at mailgate's /authorize (``start_at``: another account's), consent at the sandbox signed in
        as ``account``; the URL the browser is sent back to."""
        start = await self.api.get(start_at)
        assert start.status_code == 302, start.text
        async with httpx.AsyncClient(follow_redirects=False) as browser:
            page = await browser.get(start.headers["location"])
            assert page.status_code == 200, page.text
            answer = await browser.post(
                f"{self.sandbox.base_url}/consent",
                data={
                    "consent_id": consent_id_of(page.text),
                    "action": "accept" if accept else "deny",
                    "account": account,
                },
            )
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]

    async def authorize(self, **kwargs: Any) -> httpx.Response:
        back = await self.consent(**kwargs)
        return await self.api.get(back, headers={"Accept": "application/json"})

    async def view(self) -> dict[str, Any]:
        return dict((await self.api.get(f"{API}/oauth/config")).json())

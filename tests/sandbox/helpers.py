"""Helpers of the sandbox tests: a driver for the OAuth flow over HTTP, PKCE, a fake clock, an SMTP client."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import httpx

from mailgate.sandbox import Sandbox

REDIRECT_URI = "http://localhost:8080/ddenterpriseapi/v2/oauth/redirect"
MS_SCOPE = "https://outlook.office.com/SMTP.Send offline_access openid email"
GOOGLE_SCOPE = "https://mail.google.com/ openid email"
CLIENT = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}

#: The ``make_sandbox`` fixture: ``await make_sandbox(**config_overrides)``.
SandboxFactory = Callable[..., Awaitable[Sandbox]]


class FakeClock:
    """A clock the tests move by hand: expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def consent_id_of(html: str) -> str:
    match = re.search(r'name="consent_id" value="([^"]+)"', html)
    assert match, "no consent form on the page"
    return match.group(1)


def decode_jwt_payload(token: str) -> dict[str, Any]:
    import json

    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@dataclass
class Flow:
    """Drives the authorization code flow of one sandbox, as a browser and a client would."""

    sandbox: Sandbox
    http: httpx.AsyncClient
    tenant: str = "sandbox"
    google: bool = False
    verifier: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def authorize_path(self) -> str:
        return "/o/oauth2/v2/auth" if self.google else f"/{self.tenant}/oauth2/v2.0/authorize"

    @property
    def token_path(self) -> str:
        return "/token" if self.google else f"/{self.tenant}/oauth2/v2.0/token"

    async def authorize(self, **overrides: str) -> httpx.Response:
        self.verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": CLIENT["client_id"],
            "redirect_uri": REDIRECT_URI,
            "scope": GOOGLE_SCOPE if self.google else MS_SCOPE,
            "state": "state-123",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return await self.http.get(self.authorize_path, params={k: v for k, v in params.items() if v != "<omit>"})

    async def consent(self, consent_id: str, *, action: str = "accept", account: str = "") -> httpx.Response:
        data = {"consent_id": consent_id, "action": action, "account": account or "alice@sandbox.test"}
        return await self.http.post("/consent", data=data)

    async def code(self, account: str = "alice@sandbox.test") -> str:
        page = await self.authorize()
        assert page.status_code == 200, page.text
        answer = await self.consent(consent_id_of(page.text), account=account)
        assert answer.status_code == 302
        return httpx.URL(answer.headers["location"]).params["code"]

    async def exchange(self, code: str, **overrides: str) -> httpx.Response:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": self.verifier,
            **CLIENT,
        }
        data.update(overrides)
        return await self.http.post(self.token_path, data={k: v for k, v in data.items() if v != "<omit>"})

    async def refresh(self, refresh_token: str, **overrides: str) -> httpx.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **CLIENT, **overrides}
        return await self.http.post(self.token_path, data=data)

    async def tokens(self, account: str = "alice@sandbox.test") -> dict[str, Any]:
        answer = await self.exchange(await self.code(account))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


async def smtp_connect(sandbox: Sandbox, *, start_tls: bool | None = True) -> aiosmtplib.SMTP:
    """An aiosmtplib client connected (and, by default, upgraded with STARTTLS) to the sandbox."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=sandbox.smtp_port,
        start_tls=start_tls,
        tls_context=sandbox.client_ssl_context(),
        timeout=30,
    )
    await client.connect()
    await client.ehlo()  # learn the extensions offered (after STARTTLS they change)
    return client

"""Lifecycle fixtures: mailgate services and a sandbox provider on one hand-moved clock (days pass in a test)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mailgate.sandbox import Sandbox, SandboxConfig

from ..e2e.harness import Harness
from ..outbox.conftest import API, Env, EnvFactory, database_url, make_env  # noqa: F401 - fixtures

CLIENT_ID = "sandbox-client"
MAILBOX = "alice@sandbox.test"


@dataclass
class Life:
    """mailgate (``env``), the provider (``sandbox``), both on ``env.clock``; ``harness`` configures and consents."""

    env: Env
    harness: Harness
    sandbox: Sandbox

    async def health(self) -> dict[str, Any]:
        self.env.clock.advance(1)  # a new second: the problems are read again
        answer = await self.env.api.get("/healthz")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    async def codes(self) -> list[str]:
        return [p["code"] for p in (await self.health())["problems"]]

    async def problem(self, code: str) -> dict[str, Any]:
        found = [p for p in (await self.health())["problems"] if p["code"] == code]
        assert len(found) == 1, found
        return dict(found[0])

    async def statuses(self, ids: list[str]) -> list[str]:
        return [(await self.env.status(i))["status"] for i in ids]


LifeFactory = Callable[..., Awaitable[Life]]


@pytest.fixture
async def make_life(make_env: EnvFactory) -> AsyncIterator[LifeFactory]:  # noqa: F811
    """``await make_life("microsoft" | "google")``: configured (OAuth page + Email server page), not authorized."""
    sandboxes: list[Sandbox] = []

    async def factory(provider: str = "microsoft") -> Life:
        clock_of: list[Env] = []
        google = provider == "google"
        sandbox = Sandbox(
            SandboxConfig(
                http_port=0,
                smtp_port=0,
                rotate_refresh_tokens=not google,
                smtp_failure_style="google" if google else "microsoft",
                refresh_token_lifetime=(183 if google else 90) * 86400,
            ),
            clock=lambda: clock_of[0].clock.now.timestamp() if clock_of else time.time(),
        )
        await sandbox.start()
        sandboxes.append(sandbox)
        env: Env = await make_env(providers_toml=sandbox.providers_toml("microsoft", "google"))
        clock_of.append(env)
        harness = Harness(services=env.services, sandbox=sandbox, api=env.api, clock=env.clock)
        await harness.configure(provider)
        return Life(env, harness, sandbox)

    yield factory
    for sandbox in sandboxes:
        await sandbox.stop()


async def post_and_drain(life: Life, count: int = 1) -> list[str]:
    """``count`` messages posted and one delivery round run; their ids."""
    ids = [await life.env.post(to=[f"r{i}@example.com"]) for i in range(count)]
    await life.env.worker.drain()
    return ids

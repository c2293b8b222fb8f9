"""Fixtures: real sandboxes on free loopback ports (in-process, on the test's event loop)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mailgate.sandbox import Sandbox, SandboxConfig

from .helpers import Flow, SandboxFactory


@pytest.fixture
async def make_sandbox() -> AsyncIterator[SandboxFactory]:
    """Start sandboxes with config overrides (ports default to 0); all are stopped at the end."""
    started: list[Sandbox] = []

    async def factory(clock: Callable[[], float] | None = None, **overrides: Any) -> Sandbox:
        options: dict[str, Any] = {"http_port": 0, "smtp_port": 0, **overrides}
        config = SandboxConfig(**options)
        sandbox = Sandbox(config, clock=clock) if clock else Sandbox(config)
        await sandbox.start()
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in started:
        await sandbox.stop()


@pytest.fixture
async def sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    return await make_sandbox()


@pytest.fixture
async def http(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.base_url, follow_redirects=False) as client:
        yield client


@pytest.fixture
def flow(sandbox: Sandbox, http: httpx.AsyncClient) -> Flow:
    return Flow(sandbox, http)

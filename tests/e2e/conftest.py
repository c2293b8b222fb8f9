from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailgate.app import build_services
from mailgate.config import Settings
from mailgate.sandbox import Sandbox, SandboxConfig
from mailgate.web import create_app

from ..conftest import ADMIN_PASSWORD, basic_auth
from .harness import Clock, Harness

HarnessFactory = Callable[..., Any]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    """``await make_harness(**sandbox_config)``: a sandbox on free ports and mailgate pointed at it."""
    cleanups: list[Any] = []

    async def factory(database_url: str = "", **sandbox_options: Any) -> Harness:
        sandbox = Sandbox(SandboxConfig(http_port=0, smtp_port=0, **sandbox_options))
        await sandbox.start()
        cleanups.append(sandbox.stop)
        providers = tmp_path / "providers.toml"
        providers.write_text(sandbox.providers_toml("microsoft", "google"))
        settings = Settings(
            data_dir=tmp_path / "data",
            admin_password=ADMIN_PASSWORD,
            providers_file=providers,
            database_url=database_url,
        )
        clock = Clock()
        services = await build_services(settings, clock=clock)
        cleanups.append(services.aclose)
        await services.admins.ensure_admin(ADMIN_PASSWORD)
        api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(services)),
            base_url="http://localhost:8080",
            headers=basic_auth(),
        )
        cleanups.append(api.aclose)
        return Harness(services=services, sandbox=sandbox, api=api, clock=clock)

    yield factory
    for cleanup in reversed(cleanups):
        await cleanup()


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> Harness:
    h: Harness = await make_harness()
    return h

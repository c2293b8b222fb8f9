"""Fixtures shared by the whole suite: settings in a temporary data dir, built services, an API client."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mailgate.app import Services, build_services
from mailgate.config import Settings
from mailgate.web import create_app

ADMIN_PASSWORD = "correct horse battery"


def require_component(available: bool, what: str) -> None:
    """Skip when a component is missing on a developer machine; fail under CI, where it must be there."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI but missing", pytrace=False)
    pytest.skip(f"{what} is not available here")


def basic_auth(password: str = ADMIN_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", admin_password=ADMIN_PASSWORD)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    built = await build_services(settings)
    await built.admins.ensure_admin(settings.admin_password)
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture
async def api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080", headers=basic_auth()) as client:
        yield client

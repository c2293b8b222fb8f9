"""Fixtures shared by the whole suite: settings in a temporary data dir, built services, an API client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from mailgate.app import Services, build_services
from mailgate.config import Settings
from mailgate.web import create_app

if TYPE_CHECKING:
    from playwright.async_api import Browser

ADMIN_PASSWORD = "correct horse battery"


@contextlib.asynccontextmanager
async def throwaway_postgres_database() -> AsyncIterator[str]:
    """A new, empty database on the PostgreSQL server of MAILGATE_TEST_POSTGRES_URL, dropped afterwards: a test
    sees nothing another test (or anything else using that server) left behind."""
    url = os.environ.get("MAILGATE_TEST_POSTGRES_URL", "")
    require_component(bool(url), "PostgreSQL (MAILGATE_TEST_POSTGRES_URL)")
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"mailgate_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        base, _, _ = url.rpartition("/")
        yield f"{base}/{name}"
        for attempt in range(20):
            try:
                async with admin.connect() as conn:
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except ProgrammingError as exc:
                # FORCE may not end an autovacuum worker (the server's own role) busy in the database right
                # then ("must be a member of the role whose process is being terminated"): it is soon done.
                if getattr(exc.orig, "sqlstate", None) != "42501" or attempt == 19:  # insufficient_privilege
                    raise
                await asyncio.sleep(0.1)
    finally:
        await admin.dispose()


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


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (Debian's package, never a downloaded one) for the admin-page walks."""
    from .web.browser_stack import chromium  # Playwright only where a test asks for a browser

    async with chromium() as launched:
        yield launched

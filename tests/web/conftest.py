"""Fixtures of the admin page tests: an app client without credentials (the pages use a session cookie)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from mailgate.app import Services
from mailgate.web import create_app
from tests.conftest import ADMIN_PASSWORD

UI = "/ddenterpriseapi"
OAUTH = f"{UI}/configuration/oauth"
EMAIL = f"{UI}/configuration/email-server"
LOGIN = f"{UI}/login"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def login(client: httpx.AsyncClient, password: str = ADMIN_PASSWORD) -> httpx.Response:
    page = await client.get(LOGIN)
    return await client.post(
        LOGIN, data={"username": "admin", "password": password, "csrf_token": csrf_of(page.text), "next": ""}
    )


async def form_token(client: httpx.AsyncClient, path: str = OAUTH) -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services)


@pytest.fixture
async def web(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as client:
        yield client


@pytest.fixture
async def admin(web: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client, logged in."""
    response = await login(web)
    assert response.status_code == 303, response.text
    return web

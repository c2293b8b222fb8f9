"""Outbox fixtures: services on SQLite and (when available) PostgreSQL, a test SMTP server, a hand clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mailgate.app import Services, build_services
from mailgate.config import OutboxSettings, Settings
from mailgate.configure import EmailServerUpdate
from mailgate.outbox import Worker
from mailgate.sandbox import Sandbox, SandboxConfig
from mailgate.store.models import OutboxBodyRow, OutboxMessageRow
from mailgate.web import create_app
from mailgate.web.messages_api import message_json

from ..conftest import ADMIN_PASSWORD, throwaway_postgres_database
from ..e2e.harness import Clock, Harness
from ..smtp.conftest import ca, ca_file, server_context, start_server  # noqa: F401 - fixtures
from ..smtp.servers import RunningServer
from .servers import ScriptedMailbox

API = "/ddenterpriseapi/v2"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, or a throw-away PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
        return
    async with throwaway_postgres_database() as url:
        yield url


@dataclass
class Env:
    """Services on a test database, the clock they run on, a worker and an API client."""

    services: Services
    clock: Clock
    worker: Worker
    api: httpx.AsyncClient
    settings: Settings
    randoms: list[float]

    async def status(self, message_id: str) -> dict[str, Any]:
        return message_json(await self.services.outbox.get(message_id))

    async def post(self, **fields: Any) -> str:
        body = {"to": ["bob@example.com"], "subject": "hello", "text": "body\n", **fields}
        r = await self.api.post(f"{API}/email/messages", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    async def stored_count(self) -> int:
        """How many messages the outbox table holds."""
        async with self.services.db.session() as session:
            return int((await session.execute(select(func.count()).select_from(OutboxMessageRow))).scalar_one())

    async def stored_raw(self, message_id: str) -> bytes:
        """The message as stored, to be sent."""
        async with self.services.db.session() as session:
            row = await session.get(OutboxBodyRow, message_id)
            assert row is not None
            return row.raw

    def new_worker(self, services: Services | None = None) -> Worker:
        return Worker((services or self.services).outbox, (services or self.services).mailer, random_source=self._rand)

    def _rand(self) -> float:
        return self.randoms.pop(0) if self.randoms else 0.0


EnvFactory = Callable[..., Any]


@pytest.fixture
async def make_env(tmp_path: Path, database_url: str) -> AsyncIterator[EnvFactory]:
    """``await make_env(providers_toml=..., **outbox_settings)``."""
    cleanups: list[Any] = []

    async def factory(providers_toml: str = "", **outbox: Any) -> Env:
        providers = None
        if providers_toml:
            providers = tmp_path / "providers.toml"
            providers.write_text(providers_toml)
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            admin_password=ADMIN_PASSWORD,
            providers_file=providers,
            outbox=replace(OutboxSettings(), **outbox),
        )
        clock = Clock()
        services = await build_services(settings, clock=clock)
        cleanups.append(services.aclose)
        await services.admins.ensure_admin(ADMIN_PASSWORD)
        # An API key, as applications use: HTTP Basic would verify an argon2 hash on every request.
        key = await services.admins.create_api_key("outbox tests")
        api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(services)),
            base_url="http://localhost:8080",
            headers={"Authorization": f"Bearer {key.key}"},
        )
        cleanups.append(api.aclose)
        env = Env(services, clock, None, api, settings, [])  # type: ignore[arg-type]
        env.worker = env.new_worker()
        cleanups.append(env.worker.close)
        return env

    yield factory
    for cleanup in reversed(cleanups):
        await cleanup()


@pytest.fixture
async def env(make_env: EnvFactory) -> Env:
    made: Env = await make_env()
    return made


@pytest.fixture
def smtp(start_server: Callable[..., RunningServer]) -> Iterator[RunningServer]:  # noqa: F811
    """A STARTTLS test server with PLAIN/LOGIN (password) authentication that can fail chosen messages."""
    yield start_server(ScriptedMailbox(), tls="starttls")


async def use_server(env: Env, server: RunningServer, ca_pem: str, *, password: str = "app-password") -> None:
    """Point the Email server page at ``server`` (password authentication)."""
    await env.services.config.save_email_server(
        EmailServerUpdate(
            host=server.host,
            port=server.port,
            security="starttls",
            authentication="password",
            username=server.handler.user,
            sender=server.handler.user,
            password=password,
            ca_file=ca_pem,
        )
    )


@dataclass
class SandboxEnv:
    """An :class:`Env` wired to a sandbox provider, with the e2e harness to configure and authorize."""

    env: Env
    harness: Harness
    sandbox: Sandbox


@pytest.fixture
async def sandbox_env(make_env: EnvFactory) -> AsyncIterator[SandboxEnv]:
    sandbox = Sandbox(SandboxConfig(http_port=0, smtp_port=0))
    await sandbox.start()
    try:
        env: Env = await make_env(providers_toml=sandbox.providers_toml("microsoft", "google"))
        harness = Harness(services=env.services, sandbox=sandbox, api=env.api, clock=env.clock)
        await harness.configure("microsoft")
        yield SandboxEnv(env, harness, sandbox)
    finally:
        await sandbox.stop()

"""Relay fixtures: services on SQLite with an upstream test SMTP server, the relay listening on free ports,
and a relay user; clients trust the relay's generated certificate, as applications are told to."""

from __future__ import annotations

import shutil
import smtplib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from mailgate.app import Services
from mailgate.config import RelaySettings
from mailgate.relay import FailedLogins, RelayCertificate, RelayServer, create_relay

from ..conftest import require_component
from ..outbox.conftest import (  # noqa: F401 - fixtures
    Env,
    EnvFactory,
    ca,
    ca_file,
    database_url,
    env,
    make_env,
    server_context,
    smtp,
    start_server,
    use_server,
)
from ..smtp.servers import RunningServer

SENDER = "user@example.com"  # the upstream test server's mailbox (Mailbox.user), the Email server page's sender


@dataclass
class Relay:
    """A running relay in front of ``env``'s outbox, with one relay user."""

    env: Env
    server: RelayServer
    certificate: RelayCertificate
    port: int
    tls_port: int | None
    user: str
    password: str
    upstream: RunningServer

    def context(self) -> ssl.SSLContext:
        """A client TLS context trusting the relay's certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.certificate.cert_path))

    def client(self, *, login: bool = True, password: str | None = None) -> smtplib.SMTP:
        """An smtplib client after EHLO, STARTTLS and (``login``) AUTH.  Blocking: call it in a thread."""
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
        client.starttls(context=self.context())
        client.ehlo()
        if login:
            client.login(self.user, self.password if password is None else password)
        return client

    async def queued(self) -> int:
        return await self.env.stored_count()


RelayFactory = Callable[..., Any]


def relay_of(
    services: Services, settings: RelaySettings, *, failed_logins: FailedLogins | None = None
) -> tuple[RelayServer, RelayCertificate]:
    """A relay (not started) in front of ``services``, wired as ``mailgate serve`` wires it."""
    return create_relay(
        settings,
        services.settings.data_dir,
        users=services.relay_users,
        outbox=services.outbox,
        sender_allowed=services.accounts.may_send,
        metrics=services.relay_metrics,
        failed_logins=failed_logins,
    )


async def start_relay(
    target: Env, started: list[RelayServer], *, senders: list[str] | None = None, **relay: Any
) -> tuple[RelayServer, RelayCertificate, int, int | None, str]:
    """Start a relay on free ports in front of ``target``'s outbox with user ``app1``: (server, certificate,
    port, implicit-TLS port, password)."""
    services = target.services
    failed_logins = relay.pop("failed_logins", None)
    settings = replace(services.settings.relay, port=0, **relay)
    new = await services.relay_users.add("app1", senders=senders or [])
    server, certificate = relay_of(services, settings, failed_logins=failed_logins)
    listening = await server.start()
    started.append(server)
    assert listening.port is not None
    return server, certificate, listening.port, listening.tls_port, new.password


@pytest.fixture
async def make_relay(
    make_env: EnvFactory,  # noqa: F811
    smtp: RunningServer,  # noqa: F811
    ca_file: str,  # noqa: F811
) -> AsyncIterator[RelayFactory]:
    """``await make_relay(providers_toml=..., senders=[...], relay={...settings}, **outbox_settings)``."""
    started: list[RelayServer] = []

    async def factory(
        *,
        providers_toml: str = "",
        senders: list[str] | None = None,
        relay: dict[str, Any] | None = None,
        failed_logins: FailedLogins | None = None,
        **outbox: Any,
    ) -> Relay:
        made: Env = await make_env(providers_toml=providers_toml, **outbox)
        await use_server(made, smtp, ca_file)
        server, certificate, port, tls_port, password = await start_relay(
            made, started, senders=senders, failed_logins=failed_logins, **(relay or {})
        )
        return Relay(made, server, certificate, port, tls_port, "app1", password, smtp)

    yield factory
    for server in started:
        await server.stop()


@pytest.fixture
async def relay(make_relay: RelayFactory) -> Relay:
    made: Relay = await make_relay()
    return made


def need_tool(name: str) -> str:
    """The path of a command-line client; skip without it (fail under CI)."""
    path = shutil.which(name)
    require_component(path is not None, f"the {name} command (apt-get install {name})")
    assert path is not None
    return path

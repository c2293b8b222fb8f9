"""Alert fixtures: the outbox's environments (SQLite, PostgreSQL when available; the sandbox provider), a
webhook receiver that is down until told otherwise, and a problem source the test controls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mailgate.problems import Problem

from ..outbox.conftest import (  # noqa: F401 - fixtures
    Env,
    EnvFactory,
    SandboxEnv,
    ca,
    ca_file,
    database_url,
    env,
    make_env,
    sandbox_env,
    server_context,
    start_server,
)
from ..web.conftest import app, web  # noqa: F401 - fixtures
from .receiver import WebhookReceiver


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A webhook receiver, down (connections refused) until ``await receiver.up()``."""
    made = WebhookReceiver()
    try:
        yield made
    finally:
        await made.down()


class Problems:
    """A ProblemSource whose answer the test sets."""

    def __init__(self) -> None:
        self.current: list[Problem] = []

    async def __call__(self) -> list[Problem]:
        return list(self.current)


@pytest.fixture
def problems() -> Problems:
    return Problems()

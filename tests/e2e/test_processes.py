"""Several processes, one account: refreshes happen one at a time, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mailgate.app import build_services

from ..conftest import throwaway_postgres_database
from .harness import Harness


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    async with throwaway_postgres_database() as url:
        yield url


async def test_concurrent_processes_refresh_once_and_share_the_rotated_token(
    make_harness: object, database_url: str
) -> None:
    h: Harness = await make_harness(database_url=database_url)  # type: ignore[operator]
    await h.configure("microsoft")
    assert (await h.authorize()).status_code == 200
    h.clock.advance(3600)  # every access token is now stale
    # Four "processes": separate services, engines and connection pools on the same database.
    others = [await build_services(h.services.settings, clock=h.clock) for _ in range(3)]
    try:
        managers = [h.services.tokens, *(o.tokens for o in others)]
        tokens = await asyncio.gather(*(m.access_token() for m in managers for _ in range(10)))
    finally:
        for other in others:
            await other.aclose()
    assert len(set(tokens)) == 1
    assert h.sandbox.stats()["token_requests"]["refresh_token"] == 1  # the rotated refresh token never raced
    assert (await h.view())["token_status"] == "valid"

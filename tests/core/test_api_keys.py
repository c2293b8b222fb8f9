"""API key verification: a verified key is trusted for API_KEY_CACHE_SECONDS without reading the database,
``last_used_at`` is written at most once per LAST_USED_RESOLUTION, and a key deleted in this process stops
working at once.  Both clocks (monotonic for the cache, UTC for last_used_at) are moved by hand."""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event, update

from mailgate import admins
from mailgate.admins import API_KEY_CACHE_SECONDS, LAST_USED_RESOLUTION
from mailgate.app import Services
from mailgate.store.models import ApiKey


@dataclass
class Clocks:
    monotonic: float
    utc: datetime

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.utc += timedelta(seconds=seconds)


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Clocks:
    made = Clocks(1000.0, datetime(2026, 3, 1, 12, 0, tzinfo=UTC))

    class FixedDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            assert tz is UTC
            return made.utc

    monkeypatch.setattr(admins, "time", types.SimpleNamespace(monotonic=lambda: made.monotonic))
    monkeypatch.setattr(admins, "datetime", FixedDatetime)
    return made


@pytest.fixture
def statements(services: Services) -> Iterator[list[str]]:
    """Every SQL statement sent to the database (its first word: SELECT, UPDATE...)."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def _last_used(services: Services, key_id: int) -> datetime | None:
    async with services.db.session() as session:
        row = await session.get(ApiKey, key_id)
        assert row is not None
        return row.last_used_at


async def test_verified_key_is_trusted_for_a_while_without_the_database(
    services: Services, clocks: Clocks, statements: list[str]
) -> None:
    key = await services.admins.create_api_key("app")
    assert await services.admins.verify_api_key(key.key)
    assert "SELECT" in statements
    statements.clear()
    clocks.advance(API_KEY_CACHE_SECONDS / 2)
    assert await services.admins.verify_api_key(key.key)
    assert statements == []
    # Once the time is up, the database is asked again.
    clocks.advance(API_KEY_CACHE_SECONDS / 2)
    assert await services.admins.verify_api_key(key.key)
    assert "SELECT" in statements


async def test_concurrent_verifications_share_one_lookup(
    services: Services, clocks: Clocks, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request of an application is verified: when the cache runs out, the requests in flight wait for
    one database lookup, not one each; a failed lookup fails only those waiting for it."""
    key = await services.admins.create_api_key("app")
    real_session = services.db.session
    sessions: list[bool] = []  # one per lookup, whether it failed
    failing = [False]

    @contextlib.asynccontextmanager
    async def slow_session() -> AsyncIterator[Any]:
        sessions.append(failing[0])
        await asyncio.sleep(0.05)  # a slow database: the other requests arrive meanwhile
        if failing[0]:
            raise OSError("database gone")
        async with real_session() as session:
            yield session

    monkeypatch.setattr(services.db, "session", slow_session)
    assert await asyncio.gather(*(services.admins.verify_api_key(key.key) for _ in range(8))) == [True] * 8
    assert sessions == [False] and statements.count("SELECT") == 1
    clocks.advance(API_KEY_CACHE_SECONDS)
    failing[0] = True
    results = await asyncio.gather(*(services.admins.verify_api_key(key.key) for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [OSError] * 3 and sessions == [False, True]
    failing[0] = False
    assert await services.admins.verify_api_key(key.key) and sessions == [False, True, False]


async def test_unknown_and_malformed_keys_are_refused_and_not_cached(
    services: Services, clocks: Clocks, statements: list[str]
) -> None:
    key = await services.admins.create_api_key("app")
    statements.clear()
    assert not await services.admins.verify_api_key("not-a-key")
    assert statements == []  # no prefix: refused without a lookup
    wrong = key.key[:-4] + ("AAAA" if not key.key.endswith("AAAA") else "BBBB")
    for _ in range(2):
        statements.clear()
        assert not await services.admins.verify_api_key(wrong)
        assert "SELECT" in statements  # a refusal is looked up every time


async def test_deleted_key_fails_at_once_in_this_process(services: Services, clocks: Clocks) -> None:
    key = await services.admins.create_api_key("app")
    other = await services.admins.create_api_key("other app")
    assert await services.admins.verify_api_key(key.key)
    assert await services.admins.verify_api_key(other.key)
    await services.admins.delete_api_key(key.id)
    # Same instant: the cache would still trust it, but the deletion dropped it.
    assert not await services.admins.verify_api_key(key.key)
    assert await services.admins.verify_api_key(other.key)
    assert [k["id"] for k in await services.admins.list_api_keys()] == [other.id]


async def test_key_deleted_while_being_verified_fails_at_once(
    services: Services, clocks: Clocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await services.admins.create_api_key("app")
    real_session = services.db.session
    deleted: list[int] = []

    @contextlib.asynccontextmanager
    async def session_then_delete() -> AsyncIterator[Any]:
        async with real_session() as session:
            yield session
        if not deleted:
            # Another request deletes the key while this verification is between its read and its caching.
            deleted.append(key.id)
            await services.admins.delete_api_key(key.id)

    monkeypatch.setattr(services.db, "session", session_then_delete)
    await services.admins.verify_api_key(key.key)  # True or False: it was there when it was read
    assert deleted == [key.id]
    assert not await services.admins.verify_api_key(key.key)


async def test_key_deleted_elsewhere_fails_once_the_cache_expires(services: Services, clocks: Clocks) -> None:
    key = await services.admins.create_api_key("app")
    assert await services.admins.verify_api_key(key.key)
    # Another process deletes it: this one does not know until it asks the database again.
    async with services.db.session() as session:
        await session.execute(delete(ApiKey).where(ApiKey.id == key.id))
    clocks.advance(API_KEY_CACHE_SECONDS / 2)
    assert await services.admins.verify_api_key(key.key)
    clocks.advance(API_KEY_CACHE_SECONDS / 2)
    assert not await services.admins.verify_api_key(key.key)
    # ...and it stays refused (no longer cached).
    assert not await services.admins.verify_api_key(key.key)


async def test_last_used_at_is_written_at_most_once_per_resolution(
    services: Services, clocks: Clocks, statements: list[str]
) -> None:
    key = await services.admins.create_api_key("app")
    assert await _last_used(services, key.id) is None
    first = clocks.utc
    assert await services.admins.verify_api_key(key.key)
    assert "UPDATE" in statements
    assert await _last_used(services, key.id) == first

    # Used again and again within the resolution, with the cache expired each time: read, never rewritten.
    step = LAST_USED_RESOLUTION.total_seconds() / 4
    for _ in range(3):
        clocks.advance(step)
        statements.clear()
        assert await services.admins.verify_api_key(key.key)
        assert "SELECT" in statements and "UPDATE" not in statements
    assert await _last_used(services, key.id) == first

    # A resolution after the last write: written again.
    clocks.advance(step)
    statements.clear()
    assert await services.admins.verify_api_key(key.key)
    assert "UPDATE" in statements
    assert await _last_used(services, key.id) == first + LAST_USED_RESOLUTION
    listed = await services.admins.list_api_keys()
    assert listed[0]["last_used_at"] == (first + LAST_USED_RESOLUTION).isoformat()


async def test_an_old_last_used_at_is_refreshed(services: Services, clocks: Clocks) -> None:
    key = await services.admins.create_api_key("app")
    long_ago = clocks.utc - timedelta(days=30)
    async with services.db.session() as session:
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=long_ago))
    assert await services.admins.verify_api_key(key.key)
    assert await _last_used(services, key.id) == clocks.utc

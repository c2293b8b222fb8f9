"""Admin sessions end for good (issue 20, point 6): a logout is recorded in the database (refused after a
restart and by every process), and a password change ends every session issued before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import Connection, inspect, select

from mailgate.admins import Admins
from mailgate.app import Services, build_services
from mailgate.config import Settings
from mailgate.store import Database
from mailgate.store.db import alembic_config
from mailgate.store.models import RevokedSession
from mailgate.web import create_app
from tests.conftest import ADMIN_PASSWORD, throwaway_postgres_database

from .conftest import OAUTH, UI, form_token, login


async def _signed_in_cookie(services: Services) -> tuple[str, str]:
    """Log in on an app of ``services``: the session cookie and a CSRF token of its pages."""
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as client:
        assert (await login(client)).status_code == 303
        return client.cookies["mailgate_session"], await form_token(client)


async def _page_status(services: Services, cookie: str) -> int:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as client:
        client.cookies.set("mailgate_session", cookie, path=UI)
        return (await client.get(OAUTH)).status_code


async def test_a_logged_out_cookie_stays_refused_after_a_restart(settings: Settings) -> None:
    first = await build_services(settings)
    try:
        await first.admins.ensure_admin(ADMIN_PASSWORD)
        transport = httpx.ASGITransport(app=create_app(first))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as client:
            assert (await login(client)).status_code == 303
            stolen = client.cookies["mailgate_session"]
            token = await form_token(client)
            assert (await client.post(f"{UI}/logout", data={"csrf_token": token})).status_code == 303
        assert await _page_status(first, stolen) == 303
    finally:
        await first.aclose()
    restarted = await build_services(settings)  # a new process on the same data dir
    try:
        await restarted.admins.ensure_admin(ADMIN_PASSWORD)
        assert await _page_status(restarted, stolen) == 303
        # Another session, not logged out, is fine after the restart.
        cookie, _ = await _signed_in_cookie(restarted)
        assert await _page_status(restarted, cookie) == 200
    finally:
        await restarted.aclose()


async def test_a_password_change_ends_the_sessions_issued_before(services: Services) -> None:
    cookie, _ = await _signed_in_cookie(services)
    assert await _page_status(services, cookie) == 200
    await services.admins.set_password("the new password")
    assert await _page_status(services, cookie) == 303


async def test_a_new_admin_password_at_start_ends_the_sessions(settings: Settings) -> None:
    first = await build_services(settings)
    try:
        await first.admins.ensure_admin(ADMIN_PASSWORD)
        cookie, _ = await _signed_in_cookie(first)
    finally:
        await first.aclose()
    same = await build_services(settings)
    try:
        await same.admins.ensure_admin(ADMIN_PASSWORD)  # the same MAILGATE_ADMIN_PASSWORD: sessions go on
        assert await _page_status(same, cookie) == 200
        await same.admins.ensure_admin("MAILGATE_ADMIN_PASSWORD changed")
        assert await _page_status(same, cookie) == 303
    finally:
        await same.aclose()


async def test_revocations_past_their_expiry_are_deleted(services: Services) -> None:
    now = datetime.now(UTC)
    await services.admins.revoke_session("old", now - timedelta(seconds=1))
    await services.admins.revoke_session("current", now + timedelta(hours=1))
    await services.admins.revoke_session("current", now + timedelta(hours=1))  # twice: no error
    async with services.db.session() as session:
        left = (await session.execute(select(RevokedSession.session_id))).scalars().all()
    assert left == ["current"]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_the_revocation_table_migrates_up_and_down(backend: str, tmp_path: Path) -> None:
    """Migration 0006 on both databases: revocations work after it, and its downgrade removes the table."""
    if backend == "sqlite":
        await _migrate_up_and_down(f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}")
        return
    async with throwaway_postgres_database() as url:
        await _migrate_up_and_down(url)


async def _migrate_up_and_down(url: str) -> None:
    db = Database(url)
    try:
        await db.migrate("0005_outbox_bodies")
        await db.migrate()
        admins = Admins(db)
        await admins.ensure_admin(ADMIN_PASSWORD)
        generation = await admins.current_generation("admin")
        assert generation is not None and await admins.session_valid("admin", "s-1", generation)
        await admins.revoke_session("s-1", datetime.now(UTC) + timedelta(hours=1))
        assert not await admins.session_valid("admin", "s-1", generation)

        def downgrade(connection: Connection) -> list[str]:
            command.downgrade(alembic_config(connection), "0005_outbox_bodies")
            return inspect(connection).get_table_names()

        async with db.engine.begin() as connection:
            assert "revoked_sessions" not in await connection.run_sync(downgrade)
    finally:
        await db.close()

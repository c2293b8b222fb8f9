"""Migration 0010 on a database made by the code before it: the new tables appear, nothing is lost, and it
downgrades cleanly."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import Connection, inspect, text

from mailgate.app import build_services
from mailgate.config import Settings
from mailgate.store import Database
from mailgate.store.db import alembic_config

from ..conftest import ADMIN_PASSWORD

KEY = "a-key-for-the-migration-test-0123456789"
TABLES = {"alert_settings", "alert_conditions", "alert_notifications", "audit_log"}


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_keeps_what_0008_stored(database_url: str, tmp_path: Path) -> None:
    old = Database(database_url)
    try:
        await old.migrate("0008_relay_users")
        assert not TABLES & await _tables(old)
        async with old.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO relay_users (name, account, senders, password_hash, created_at) "
                    "VALUES ('printer', 'default', '[]', :h, '2026-01-01 00:00:00')"
                ),
                {"h": "0" * 64},
            )
            await conn.execute(
                text("INSERT INTO accounts (name, senders, created_at) VALUES ('branch', '[]', :t)"),
                {"t": "2026-01-01 00:00:00"},
            )
    finally:
        await old.close()
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, secret_key=KEY, admin_password=ADMIN_PASSWORD
    )
    services = await build_services(settings)  # migrates to head
    try:
        assert await _tables(services.db) >= TABLES
        assert [u.name for u in await services.relay_users.list()] == ["printer"]
        assert await services.accounts.names() == ["default", "branch"]
        await services.relay_users.remove("printer")
        assert [e.action for e in await services.audit.list()] == ["relay_user.removed"]
        assert (await services.alerts.get()).to_dict() == {"webhook_url": "", "email_to": [], "fallback_smtp": None}
    finally:
        await services.aclose()

    def downgrade(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "0008_relay_users")

    db = Database(database_url)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(downgrade)
        assert not TABLES & await _tables(db)
        async with db.engine.connect() as connection:
            names = (await connection.execute(text("SELECT name FROM accounts"))).scalars().all()
            assert "branch" in names
    finally:
        await db.close()

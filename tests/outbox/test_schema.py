"""The migrations build the schema the models describe (tables, columns, indexes), on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, select, text, update

from mailgate.store import Database
from mailgate.store.db import alembic_config
from mailgate.store.models import Base, OutboxBodyRow, OutboxMessageRow

from .conftest import Env


async def test_migrated_database_matches_the_models(env: Env) -> None:
    def differences(connection: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    async with env.services.db.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_the_sent_index_holds_sent_messages_only(env: Env) -> None:
    """ix_outbox_sent is partial (compare_metadata does not compare an index's WHERE clause)."""
    query = (
        "SELECT sql FROM sqlite_master WHERE name = 'ix_outbox_sent'"
        if env.services.db.is_sqlite
        else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_outbox_sent'"
    )
    async with env.services.db.engine.connect() as connection:
        definition = (await connection.exec_driver_sql(query)).scalar_one()
    assert "WHERE" in definition and "sent_at IS NOT NULL" in definition, definition


async def test_bodies_move_to_their_own_table_and_back(database_url: str) -> None:
    """Migration 0005 moves each stored message's body, byte for byte, out of its row into outbox_bodies; its
    downgrade puts them back."""
    db = Database(database_url)
    body = b"Subject: x\r\n\r\n\x00\xff binary\r\n"
    row = {
        "id": "m-1", "account_id": "default", "status": "queued", "sender": "a@example.com",
        "recipients": '["b@example.com"]', "subject": "x", "message_id": "<1@example.com>", "raw": body,
        "size": len(body), "attempts": 0, "next_attempt_at": "2026-01-01 00:00:00",
        "deadline_at": "2026-01-03 00:00:00",
        "last_error": "", "last_error_code": "", "smtp_reply": "", "recipient_results": "{}", "request_hash": "",
        "created_at": "2026-01-01 00:00:00", "updated_at": "2026-01-01 00:00:00",
    }  # fmt: skip
    try:
        await db.migrate("0004_outbox_lighter_indexes")
        async with db.engine.begin() as connection:
            await connection.execute(
                text(f"INSERT INTO outbox_messages ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"), row
            )
        await db.migrate()
        async with db.session() as session:
            stored = await session.get(OutboxBodyRow, "m-1")
            message = await session.get(OutboxMessageRow, "m-1")
            assert stored is not None and stored.raw == body
            assert message is not None and message.size == len(body) and message.status == "queued"

        def downgrade(connection: Connection) -> None:
            command.downgrade(alembic_config(connection), "0004_outbox_lighter_indexes")

        async with db.engine.begin() as connection:
            await connection.run_sync(downgrade)
            back = (await connection.execute(text("SELECT raw FROM outbox_messages WHERE id = 'm-1'"))).scalar_one()
        assert bytes(back) == body
    finally:
        await db.close()


async def test_purging_a_message_removes_its_body(env: Env) -> None:
    purged, kept = [await env.post(**{"from": "me@example.com"}) for _ in range(2)]
    async with env.services.db.session() as session:
        await session.execute(update(OutboxMessageRow).where(OutboxMessageRow.id == purged).values(status="failed"))
    assert await env.services.outbox.purge(["failed"], timedelta(0)) == 1
    async with env.services.db.session() as session:
        assert list((await session.execute(select(OutboxBodyRow.id))).scalars()) == [kept]

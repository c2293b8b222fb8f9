"""The migrations build the schema the models describe (tables, columns, indexes), on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from mailgate.store.models import Base

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

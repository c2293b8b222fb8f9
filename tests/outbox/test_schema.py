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

"""The database: an async engine, sessions, and Alembic migrations applied at start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from ..errors import ConfigurationError
from .files import private_sqlite_file

__all__ = ["Database", "alembic_config", "sqlite_pragmas"]


#: SQLite: the write-ahead log's size (bytes) after a checkpoint (SQLite's journal_size_limit).
WAL_SIZE_LIMIT = 32 * 1024 * 1024


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the worker read while the web server writes; busy_timeout waits instead of failing at once.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # Every commit on the disk before it returns (some builds default to NORMAL in WAL mode).  Only the
    # outbox's delivery records and claims do not wait for the disk (see outbox.commit).
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    # After a checkpoint the write-ahead log starts over, and is cut back to this size: a burst of large
    # messages would leave it as large as the burst, for good.
    cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration for mailgate's migrations, run on ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("mailgate.store") / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


class Database:
    """Owns the engine.  ``session()`` gives a unit of work that commits on success."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session, session.begin():
            yield session

    async def migrate(self, revision: str = "head") -> None:
        """Apply every Alembic migration not yet applied (idempotent, safe on every start); up to ``revision``."""

        def upgrade(conn: Connection) -> None:
            command.upgrade(alembic_config(conn), revision)

        # Before SQLite creates the file (its -wal and -shm take the file's mode): 0600.
        private_sqlite_file(self.url)
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(upgrade)
        except OperationalError as exc:
            raise ConfigurationError(
                f"Cannot open the database {self!r}: {exc.orig}",
                hint="Check MAILGATE_DATABASE_URL / MAILGATE_DATA_DIR, that the server is running and the "
                "user may create tables.",
            ) from exc

    async def close(self) -> None:
        await self.engine.dispose()

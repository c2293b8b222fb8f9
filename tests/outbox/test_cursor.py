"""Statements on SQLite's DBAPI cursor (outbox.cursor): the same SQL, parameters and rows as through
SQLAlchemy, lists of values (IN, NOT IN) of any length, SQLAlchemy's exceptions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from mailgate.outbox import cursor
from mailgate.store.models import UtcDateTime

T = Table(
    "t",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", String),
    Column("at", UtcDateTime()),
    Column("data", JSON),
)
IDS = bindparam("ids", expanding=True)
SKIP = bindparam("skip", expanding=True)
#: Rows by id in a list, except some, after a time: what a claim's statements look like.
QUERY = (
    select(T.c.id, T.c.name, T.c.at, T.c.data)
    .where(T.c.id.in_(IDS), T.c.id.not_in(SKIP), T.c.at >= bindparam("since", type_=UtcDateTime()))
    .order_by(T.c.id)
)
CLAIM = (
    update(T)
    .where(T.c.id.in_(IDS), T.c.name != "taken")
    .values(name="taken", at=bindparam("at"))
    .returning(T.c.id, T.c.at, T.c.data)
)


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[Connection]:
    engine = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    T.metadata.create_all(engine)
    base = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    with engine.begin() as c:
        c.execute(
            insert(T),
            [
                {"id": i, "name": f"n{i}", "at": base + timedelta(minutes=i), "data": {"i": i, "ü": [1, None]}}
                for i in range(1, 8)
            ],
        )
    with engine.connect() as c:
        yield c
    engine.dispose()


@pytest.mark.parametrize(
    ("ids", "skip"), [([1, 2, 3, 7], [2]), ([5], []), ([], [1]), (list(range(1, 8)), list(range(1, 7)))]
)
def test_rows_as_sqlalchemy_reads_them(connection: Connection, ids: list[int], skip: list[int]) -> None:
    # A time in another zone: converted as SQLAlchemy converts it (to UTC, then to SQLite's text).
    since = datetime(2026, 5, 6, 3, 10, tzinfo=timezone(timedelta(hours=-4)))
    params: dict[str, Any] = {"ids": ids, "skip": skip, "since": since}
    plan = cursor.plan(QUERY, connection.dialect, frozenset(params))
    assert plan is not None and plan.expanding
    sql, _ = plan.bind(params)
    # As many placeholders as values; an empty list is SQLite's empty IN ().
    assert sql.count("?") == len(ids) + len(skip) + 1 and "POSTCOMPILE" not in sql

    through_sqlalchemy = [tuple(row) for row in connection.execute(QUERY, params)]
    on_the_cursor = [tuple(row) for row in cursor.execute(connection, QUERY, params)]

    assert on_the_cursor == through_sqlalchemy
    assert [row[0] for row in on_the_cursor] == [i for i in ids if i not in skip and i >= 2]
    for _, _, at, data in on_the_cursor:
        assert at.tzinfo is UTC and data["ü"] == [1, None]  # aware datetimes, decoded JSON


def test_update_returning_and_row_counts(connection: Connection) -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    with connection.begin():
        rows = cursor.execute(connection, CLAIM, {"ids": [2, 4, 9], "at": at})
    assert sorted(rows) == [(2, at, {"i": 2, "ü": [1, None]}), (4, at, {"i": 4, "ü": [1, None]})]
    with connection.begin():
        assert cursor.execute(connection, CLAIM, {"ids": [2, 3], "at": at}) == [(3, at, {"i": 3, "ü": [1, None]})]
        # A statement that returns no rows.
        assert cursor.execute(connection, update(T).where(T.c.id == 1).values(name="x"), {}) == []
    assert connection.execute(select(T.c.name).where(T.c.id.in_([1, 2, 3, 5]))).scalars().all() == [
        "x", "taken", "taken", "n5",
    ]  # fmt: skip


def test_errors_are_sqlalchemys(connection: Connection, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError), connection.begin():
        cursor.execute(connection, insert(T).values(id=bindparam("id")), {"id": 1})
    # Another connection holds the write lock: SQLite's "database is locked", as SQLAlchemy raises it (the
    # outbox's group commit looks for it).
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA busy_timeout=0")
        with pytest.raises(OperationalError) as raised, connection.begin():
            cursor.execute(connection, CLAIM, {"ids": [5], "at": datetime.now(UTC)})
        assert isinstance(raised.value.orig, sqlite3.OperationalError)
        assert raised.value.orig.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    finally:
        holder.close()


def test_left_to_sqlalchemy() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = sqlite.pysqlite.dialect()
    # Lists of tuples, values computed at execution (a column default): SQLAlchemy runs those.
    pairs = select(T.c.id).where(tuple_(T.c.id, T.c.name).in_(bindparam("pairs", expanding=True)))
    assert cursor.plan(pairs, dialect, frozenset({"pairs"})) is None
    with_default = Table(
        "d", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer, default=lambda: 1)
    )
    assert cursor.plan(insert(with_default), dialect, frozenset({"id"})) is None
    # Not SQLite: SQLAlchemy (execute() never plans for other databases; a named paramstyle has no order).
    assert cursor.plan(QUERY, postgresql.psycopg.dialect(), frozenset({"ids", "skip", "since"})) is None

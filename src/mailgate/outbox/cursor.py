"""Core statements run on SQLite's DBAPI cursor, as SQLAlchemy would run them, without its execution layer.

For the outbox's busiest statements (a delivery's record, a worker's claim), SQLAlchemy's execution layer
(execution context, parameter and result set-up, events, Row objects) costs more CPU than SQLite's own work.
A statement is compiled once (:func:`plan`); its :class:`Plan` then gives the SQL and the parameters of an
execution, lists of values (``IN``) spliced in and the column types' conversions applied, and converts the
rows it returns, all as SQLAlchemy would.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Executable
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.sqltypes import LargeBinary, TupleType

__all__ = ["Plan", "execute", "plan", "write_plan"]

Convert = Callable[[Any], Any]
#: Where SQLAlchemy's compiler leaves an expanding parameter's list to be rendered at execution.
_EXPANDING = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


@dataclass(frozen=True)
class Plan:
    """A statement compiled for the cursor.  Each slot is a parameter in order: its key in the caller's
    parameters (or None: the statement's own value), that value, the column type's conversion, and whether
    it is a list of values (``parts`` holds the SQL around each list's place)."""

    parts: tuple[str, ...]
    slots: tuple[tuple[str | None, Any, Convert | None, bool], ...]
    #: The conversions of the columns the statement returns (None: the driver's value as it is).
    columns: tuple[Convert | None, ...]
    #: The caller's parameters of a binary type (a message's body): what makes a write large.
    blobs: tuple[str, ...] = ()

    @property
    def expanding(self) -> bool:
        """Whether a parameter is a list of values (the SQL depends on its length)."""
        return len(self.parts) > 1

    def bind(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL of an execution with ``params`` (a placeholder for each value of a list) and its
        parameters in order, converted."""
        out: list[Any] = []
        lengths: list[int] = []  # of the lists, in order
        for key, value, convert, many in self.slots:
            if key is not None:
                value = params[key]
            if many:
                lengths.append(len(value))
                out += value if convert is None else [convert(v) for v in value]
            else:
                out.append(value if convert is None else convert(value))
        sql = [self.parts[0]]
        for length, part in zip(lengths, self.parts[1:], strict=True):
            sql += [", ".join("?" * length), part]
        return "".join(sql), out

    def rows(self, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        columns = self.columns
        if not any(columns):
            return list(rows)
        return [tuple(v if c is None else c(v) for c, v in zip(columns, row, strict=True)) for row in rows]


@functools.lru_cache(maxsize=128)
def plan(statement: Executable, dialect: Dialect, keys: frozenset[str]) -> Plan | None:
    """How to run ``statement`` with parameters ``keys`` on the cursor; None to leave it to SQLAlchemy (a
    statement with defaults computed at execution, tuples of values, or named parameters)."""
    if not isinstance(statement, ClauseElement):
        return None
    compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
    if (
        not isinstance(compiled, SQLCompiler)
        or compiled.positiontup is None
        # Values SQLAlchemy computes at execution, or reads back after it (DML only).
        or any(getattr(compiled, name, None) for name in ("insert_prefetch", "update_prefetch", "postfetch"))
    ):
        return None
    pieces = _EXPANDING.split(compiled.string)  # text, name, text, name, ..., text
    slots = []
    blobs = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        if bind.callable is not None or (bind.expanding and isinstance(bind.type, TupleType)):
            return None
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        mine = bind.key in keys
        slots.append((bind.key if mine else None, None if mine else bind.effective_value, convert, bind.expanding))
        if mine and not bind.expanding and isinstance(bind.type, LargeBinary):
            blobs.append(bind.key)
    if [name for name in compiled.positiontup if compiled.binds[name].expanding] != pieces[1::2]:
        return None  # not rendered as expected: SQLAlchemy knows best
    # The returned columns' types, as the compiler resolved them for SQLAlchemy's own result processing.
    columns = tuple(e.type.dialect_impl(dialect).result_processor(dialect, None) for e in compiled._result_columns)
    return Plan(tuple(pieces[0::2]), tuple(slots), columns, tuple(blobs))


@functools.lru_cache(maxsize=64)
def write_plan(statement: Executable, dialect: Dialect, keys: frozenset[str]) -> Plan | None:
    """The plan of a write run in a batch (GroupCommit's on SQLite, :mod:`.pgwrite`'s on PostgreSQL): its
    row count is all it gives back; None to leave it to SQLAlchemy: RETURNING, lists of values, and what
    :func:`plan` leaves to it."""
    # RETURNING: read from the statement (its public views of it, exported_columns and the compiler's
    # effective_returning, can be stale copies of the statement's it was generated from).
    if not isinstance(statement, UpdateBase) or statement._returning:
        return None
    found = plan(statement, dialect, keys)
    return None if found is None or found.expanding else found


def execute(connection: Connection, statement: Executable, params: Mapping[str, Any]) -> list[Sequence[Any]]:
    """The rows of ``statement`` (none for a statement that returns none), run on the DBAPI cursor when
    the connection is SQLite's, through SQLAlchemy otherwise.  Errors are SQLAlchemy's either way."""
    found = plan(statement, connection.dialect, frozenset(params)) if connection.dialect.name == "sqlite" else None
    if found is None:
        result = connection.execute(statement, dict(params))
        return list(result) if result.returns_rows else []
    sql, parameters = found.bind(params)
    driver = connection.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        cursor.execute(sql, parameters)
        return found.rows(cursor.fetchall())
    except connection.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, parameters, exc, connection.dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()

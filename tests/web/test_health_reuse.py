"""``/healthz`` reuses its database answers for a second (issue 20, point 1: under a flood of requests every
hop to the database waits behind the flood, so a probe asking every few milliseconds must not make them)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import event

from mailgate.app import Services
from mailgate.web import health


async def test_probes_within_a_second_share_one_database_check(
    services: Services, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        first = await api.get("/healthz")
        checked = len(statements)
        for _ in range(5):
            again = await api.get("/healthz")
            assert again.json() == first.json()
        assert checked > 0 and len(statements) == checked, statements[checked:]
        monkeypatch.setattr(health, "DATABASE_CHECK_SECONDS", 0.0)  # the second is up: asked again
        await api.get("/healthz")
        assert len(statements) > checked
    finally:
        event.remove(engine, "before_cursor_execute", seen)

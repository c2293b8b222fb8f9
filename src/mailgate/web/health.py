"""``/healthz`` and ``/metrics`` at the server root (no authentication: for load balancers and Prometheus)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from ..app import Services
from ..singleflight import SingleFlight
from .deps import ServicesDep
from .metrics import render_outbox

__all__ = ["router"]

router = APIRouter(tags=["health"])


#: How long the database's answers (reachable, token status) are reused.  Under a flood of requests every
#: hop to the database thread waits behind the flood's requests on the event loop, so a probe asking every
#: few milliseconds would wait longest exactly when it matters; a second-old answer is as good to it.
DATABASE_CHECK_SECONDS = 1.0


class DatabaseCheck:
    """The database part of ``/healthz``, run at most once per :data:`DATABASE_CHECK_SECONDS` (concurrent
    probes share one run)."""

    def __init__(self) -> None:
        self._flight: SingleFlight[None, dict[str, str]] = SingleFlight()
        self._checks: dict[str, str] = {}
        self._at = 0.0

    async def checks(self, services: Services) -> dict[str, str]:
        if not self._checks or time.monotonic() - self._at >= DATABASE_CHECK_SECONDS:
            self._checks = await self._flight.run(None, lambda: _check_database(services))
            self._at = time.monotonic()
        return self._checks


async def _check_database(services: Services) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        async with services.db.session() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    view = await services.config.oauth_view() if checks["database"] == "ok" else None
    checks["token_status"] = view.token_status.value if view else "unknown"
    return checks


@router.get("/healthz")
async def healthz(request: Request, services: ServicesDep) -> JSONResponse:
    database: DatabaseCheck | None = getattr(request.app.state, "database_check", None)
    if database is None:
        database = request.app.state.database_check = DatabaseCheck()
    checks = dict(await database.checks(services))
    # "not started" is fine (a web-only process; the worker runs elsewhere), "crashed: ..." is not.
    checks["worker"] = services.outbox.worker_state
    ok = checks["database"] == "ok" and not checks["worker"].startswith("crashed")
    if not ok:
        return JSONResponse({"status": "error", **checks}, status_code=503)
    # 200 while degraded: the process is healthy (a liveness probe must not restart it), an account is not.
    problems = await services.problems()
    status = "degraded" if any(p.severity == "critical" for p in problems) else "ok"
    prefix = services.settings.context_path
    listed = [p.to_dict(prefix) for p in problems]
    return JSONResponse({"status": status, **checks, "problems": listed})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(services: ServicesDep) -> str:
    outbox = services.outbox
    text = render_outbox(outbox.metrics, await outbox.counts(), services.tokens.refresh_requests, outbox.intake)
    return text + services.relay_metrics.render()

"""``/healthz`` and ``/metrics`` at the server root (no authentication: for load balancers and Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from .deps import ServicesDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with services.db.session() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    view = await services.config.oauth_view() if checks["database"] == "ok" else None
    checks["token_status"] = view.token_status.value if view else "unknown"
    # "not started" is fine (a web-only process; the worker runs elsewhere), "crashed: ..." is not.
    checks["worker"] = services.outbox.worker_state
    ok = checks["database"] == "ok" and not checks["worker"].startswith("crashed")
    return JSONResponse({"status": "ok" if ok else "error", **checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(services: ServicesDep) -> str:
    outbox = services.outbox
    text = outbox.metrics.render(await outbox.counts(), services.tokens.refresh_requests, outbox.intake)
    return text + services.relay_metrics.render()

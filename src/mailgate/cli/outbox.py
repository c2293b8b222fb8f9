"""``mailgate outbox list|show|retry|purge`` and ``mailgate worker`` (the delivery worker alone)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Protocol

import typer

from ..app import Services
from ..errors import ConfigurationError
from ..outbox import MessageView, Status, Worker
from .common import DataDir, on_stop_signals, run_with_services

__all__ = ["outbox_app", "register", "run_worker"]


outbox_app = typer.Typer(no_args_is_help=True, help="The outbox: queued, sent, held and failed messages.")


def _line(view: MessageView) -> str:
    error = f"  {view.last_error_code}" if view.last_error and view.status != Status.SENT else ""
    when = view.created_at.strftime("%Y-%m-%d %H:%M:%S")
    rcpts = ", ".join(view.recipients[:3]) + (f" +{len(view.recipients) - 3}" if len(view.recipients) > 3 else "")
    subject = f"{view.subject[:40]!r}{error}"
    return f"{view.id}  {view.status:8} {view.attempts:>3}  {when}  {view.account_id}  {rcpts}  {subject}"


@outbox_app.command("list")
def outbox_list(
    status: Annotated[list[Status] | None, typer.Option("--status", help="Only these statuses (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    account: Annotated[str | None, typer.Option(help="Only this account's messages (default: every account).")] = None,
    data_dir: DataDir = None,
) -> None:
    """List messages, newest first: id, status, attempts, queued at, account, recipients, subject."""
    statuses = [s.value for s in status or []]
    items, total = run_with_services(
        data_dir, lambda s: s.outbox.list(statuses=statuses, limit=limit, offset=offset, account=account)
    )
    for item in items:
        typer.echo(_line(item))
    typer.echo(f"{len(items)} of {total} message(s)")


@outbox_app.command("show")
def outbox_show(message_id: str, data_dir: DataDir = None) -> None:
    """Everything about one message (as JSON), except its body."""
    from ..web.messages_api import message_json  # the API's shape (web: imported only when needed)

    view = run_with_services(data_dir, lambda s: s.outbox.get(message_id))
    typer.echo(json.dumps(message_json(view), indent=2))


@outbox_app.command("retry")
def outbox_retry(message_ids: list[str], data_dir: DataDir = None) -> None:
    """Queue failed, held or retrying messages again, due now."""

    async def retry(services: Services) -> list[MessageView]:
        return [await services.outbox.retry(message_id) for message_id in message_ids]

    for view in run_with_services(data_dir, retry):
        typer.echo(f"{view.id} {view.status}")


@outbox_app.command("purge")
def outbox_purge(
    status: Annotated[
        list[Status] | None, typer.Option("--status", help="sent, failed or held (repeatable) [sent, failed].")
    ] = None,
    older_than_days: Annotated[float, typer.Option(min=0, help="Only messages last changed this long ago.")] = 30,
    account: Annotated[str | None, typer.Option(help="Only this account's messages (default: every account).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Delete old sent and failed messages (never queued, retrying or sending ones)."""
    statuses = [s.value for s in status] if status else [Status.SENT.value, Status.FAILED.value]
    older = timedelta(days=older_than_days)
    count = run_with_services(data_dir, lambda s: s.outbox.purge(statuses, older, account))
    typer.echo(f"Deleted {count} message(s).")


async def run_worker(
    services: Services, metrics: tuple[str, int] | None = None, accounts: tuple[str, ...] = ()
) -> None:
    """Deliver the outbox until SIGINT/SIGTERM (used by ``mailgate worker``); with ``metrics`` (host, port),
    serve this process's ``/metrics`` and ``/healthz`` there meanwhile.  ``accounts``: only these (default:
    every account, followed as they are added and deleted)."""
    for name in accounts:
        await services.accounts.require(name)
    worker = Worker(services.outbox, services.mailer, accounts=accounts)
    services.keepalive.start()  # idle grants are refreshed where mail is delivered (stopped by services.aclose)
    server = _health_server(services, *metrics) if metrics else None

    def stop() -> None:
        worker.stop()
        services.notifier.stop()
        if server is not None:
            server.should_exit = True

    on_stop_signals(stop)
    typer.echo(f"mailgate worker {worker.owner} delivering the outbox of {services.db!r}")
    alerts = asyncio.create_task(services.notifier.run(), name="alert-notifier")
    serving = None
    if server is not None:
        typer.echo(f"/metrics and /healthz of this worker: {server.url}")
        serving = asyncio.create_task(server.serve(sockets=[server.listening]), name="worker-metrics")
    try:
        await worker.run()
    finally:
        stop()
        await alerts
        if serving is not None:
            await serving


class _HealthServer(Protocol):
    """What run_worker uses of the server _health_server makes."""

    url: str
    listening: socket.socket
    should_exit: bool

    async def serve(self, sockets: list[socket.socket] | None = None) -> None: ...


def _health_server(services: Services, host: str, port: int) -> _HealthServer:
    """uvicorn serving the worker's /metrics and /healthz, on a socket bound now (a port in use is an error
    before the worker starts), leaving SIGINT and SIGTERM to the worker (on_stop_signals)."""
    import uvicorn
    from fastapi import FastAPI

    from ..web import health

    try:
        listening = socket.create_server((host, port))
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot listen on {host}:{port} for the worker's /metrics: {exc.strerror or exc}.",
            hint="Choose a free port with --metrics-port (each worker on a host needs its own).",
        ) from exc

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.services = services
    app.include_router(health.router)

    class Server(uvicorn.Server):
        def __init__(self) -> None:
            super().__init__(uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False))
            self.listening = listening
            self.url = f"http://{host}:{listening.getsockname()[1]}/"

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server()


def worker(
    data_dir: DataDir = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this worker's /metrics and /healthz (Prometheus) on this port.", min=0, max=65535),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of --metrics-port.")] = "127.0.0.1",
    account: Annotated[
        list[str] | None, typer.Option("--account", help="Deliver only this account's mail (repeatable; default: all).")
    ] = None,
) -> None:
    """Run only the delivery worker (scale-out: several workers share a PostgreSQL outbox)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = (metrics_host, metrics_port) if metrics_port is not None else None
    run_with_services(data_dir, lambda services: run_worker(services, metrics, tuple(account or ())))


def register(app: typer.Typer) -> None:
    """Add ``outbox`` and ``worker`` to the ``mailgate`` command."""
    app.add_typer(outbox_app, name="outbox")
    app.command("worker")(worker)

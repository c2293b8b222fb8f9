"""``mailgate outbox list|show|retry|purge`` and ``mailgate worker`` (the delivery worker alone)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Annotated

import typer

from ..app import Services
from ..outbox import MessageView, Status, Worker
from .common import DataDir, on_stop_signals, run_with_services

__all__ = ["outbox_app", "register", "run_worker"]


outbox_app = typer.Typer(no_args_is_help=True, help="The outbox: queued, sent, held and failed messages.")


def _line(view: MessageView) -> str:
    error = f"  {view.last_error_code}" if view.last_error and view.status != Status.SENT else ""
    when = view.created_at.strftime("%Y-%m-%d %H:%M:%S")
    rcpts = ", ".join(view.recipients[:3]) + (f" +{len(view.recipients) - 3}" if len(view.recipients) > 3 else "")
    return f"{view.id}  {view.status:8} {view.attempts:>3}  {when}  {rcpts}  {view.subject[:40]!r}{error}"


@outbox_app.command("list")
def outbox_list(
    status: Annotated[list[Status] | None, typer.Option("--status", help="Only these statuses (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    data_dir: DataDir = None,
) -> None:
    """List messages, newest first: id, status, attempts, queued at, recipients, subject."""
    statuses = [s.value for s in status or []]
    items, total = run_with_services(data_dir, lambda s: s.outbox.list(statuses=statuses, limit=limit, offset=offset))
    for item in items:
        typer.echo(_line(item))
    typer.echo(f"{len(items)} of {total} message(s)")


@outbox_app.command("show")
def outbox_show(message_id: str, data_dir: DataDir = None) -> None:
    """Everything about one message (as JSON), except its body."""
    view = run_with_services(data_dir, lambda s: s.outbox.get(message_id))
    typer.echo(json.dumps(view.to_dict(), indent=2))


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
    data_dir: DataDir = None,
) -> None:
    """Delete old sent and failed messages (never queued, retrying or sending ones)."""
    statuses = [s.value for s in status] if status else [Status.SENT.value, Status.FAILED.value]
    older = timedelta(days=older_than_days)
    count = run_with_services(data_dir, lambda s: s.outbox.purge(statuses, older))
    typer.echo(f"Deleted {count} message(s).")


async def run_worker(services: Services) -> None:
    """Deliver the outbox until SIGINT/SIGTERM (used by ``mailgate worker``)."""
    worker = Worker(services.outbox, services.mailer)
    on_stop_signals(worker.stop)
    typer.echo(f"mailgate worker {worker.owner} delivering the outbox of {services.db!r}")
    await worker.run()


def worker(data_dir: DataDir = None) -> None:
    """Run only the delivery worker (scale-out: several workers share a PostgreSQL outbox)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_with_services(data_dir, run_worker)


def register(app: typer.Typer) -> None:
    """Add ``outbox`` and ``worker`` to the ``mailgate`` command."""
    app.add_typer(outbox_app, name="outbox")
    app.command("worker")(worker)

"""What every ``mailgate`` command shares: settings from the environment, running a coroutine, errors."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvloop

from ..app import Services, build_services
from ..audit import ACTOR
from ..config import Settings
from ..errors import MailgateError

__all__ = [
    "Account",
    "DataDir",
    "fail",
    "load_settings",
    "on_stop_signals",
    "report",
    "run",
    "run_with_services",
    "with_services",
]

T = TypeVar("T")

# No square brackets in help texts: Typer reads them as Rich markup and drops them ("Data directory .").
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default: MAILGATE_DATA_DIR, else ./mailgate-data).")
]

#: ``--account NAME`` of the commands that configure or send (the routes without an account edit ``default``).
Account = Annotated[str, typer.Option("--account", help="The account (sending mailbox) to use.")]


def load_settings(data_dir: Path | None = None, *, listen_port: int | None = None) -> Settings:
    """The settings of the environment, ``--data-dir`` winning; ``listen_port``: see ``Settings.from_env``."""
    return Settings.from_env(os.environ, listen_port=listen_port, data_dir=data_dir)


def report(exc: MailgateError) -> None:
    typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
    if exc.hint:
        typer.echo(f"what to do: {exc.hint}", err=True)


def fail(exc: MailgateError) -> None:
    report(exc)
    raise typer.Exit(1)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop (the loop uvicorn uses too, cheaper than asyncio's own); a MailgateError is
    printed with what to do, and the command exits with 1."""
    try:
        return uvloop.run(coro)
    except MailgateError as exc:
        fail(exc)
        raise  # unreachable: fail exits


def cli_actor() -> str:
    """Who the audit log names for what a command changes: the CLI and the operating-system user."""
    try:
        return f"CLI (user {getpass.getuser()})"
    except (OSError, KeyError):  # no user name in this environment (a container without /etc/passwd entry)
        return f"CLI (uid {os.getuid()})"


async def with_services(settings: Settings, action: Callable[[Services], Awaitable[T]]) -> T:
    ACTOR.set(cli_actor())
    services = await build_services(settings)
    try:
        return await action(services)
    finally:
        await services.aclose()


def run_with_services(data_dir: Path | None, action: Callable[[Services], Awaitable[T]]) -> T:
    """``action`` with the services of the data directory (or MAILGATE_DATA_DIR), then close them."""
    return run(with_services(load_settings(data_dir), action))


def on_stop_signals(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGINT and SIGTERM (in the running loop), instead of the process dying at once.

    ``mailgate serve``: uvicorn handles these signals while it serves, then puts back the handlers it found and
    raises the signal again; with no handler of ours, SIGTERM would kill the process there, before the worker
    has finished its messages and the database is closed."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop)

"""``mailgate relay user add|list|remove``: the credentials of the SMTP relay, one per application."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..relay import DEFAULT_ACCOUNT
from .common import DataDir, run_with_services

__all__ = ["register", "relay_app"]

relay_app = typer.Typer(no_args_is_help=True, help="The SMTP relay for applications that only speak SMTP.")
user_app = typer.Typer(no_args_is_help=True, help="Relay users: one generated password per application.")
relay_app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The SMTP user name the application logs in with.")],
    account: Annotated[str, typer.Option(help="The account it sends through.")] = DEFAULT_ACCOUNT,
    sender: Annotated[
        list[str] | None,
        typer.Option("--sender", help="Another address (or *@domain) it may send as (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"username": ..., "password": ...}.')] = False,
    data_dir: DataDir = None,
) -> None:
    """Create a relay user; its generated password is printed only this once."""
    new = run_with_services(data_dir, lambda s: s.relay_users.add(name, account=account, senders=sender or []))
    if as_json:
        typer.echo(json.dumps({"username": new.username, "password": new.password}))
        return
    typer.echo(f"Relay user {new.username} (account {new.user.account})")
    typer.echo(f"  user name: {new.username}\n  password:  {new.password}")
    typer.echo("Shown only once: type it into the application (SMTP AUTH, with STARTTLS).")


@user_app.command("list")
def user_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List relay users with their account, extra senders and last use (never a password)."""
    users = run_with_services(data_dir, lambda s: s.relay_users.list())
    if as_json:
        typer.echo(json.dumps([u.to_dict() for u in users], indent=2))
        return
    for user in users:
        used = user.last_used_at.strftime("%Y-%m-%d %H:%M") if user.last_used_at else "never"
        senders = f"  senders: {', '.join(user.senders)}" if user.senders else ""
        typer.echo(f"{user.name:24} account {user.account:12} last used {used}{senders}")
    typer.echo(f"{len(users)} relay user(s)")


@user_app.command("remove")
def user_remove(name: str, data_dir: DataDir = None) -> None:
    """Delete a relay user: its application is refused from its next login on."""
    run_with_services(data_dir, lambda s: s.relay_users.remove(name))
    typer.echo("Removed.")


def register(app: typer.Typer) -> None:
    """Add ``mailgate relay`` to the main command."""
    app.add_typer(relay_app, name="relay")

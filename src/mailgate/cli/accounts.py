"""``mailgate accounts list|delete``: the sending mailboxes (``oauth`` and ``email`` commands take
``--account NAME`` to configure one; configuring a new name creates it)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..app import Services
from .common import DataDir, run_with_services

__all__ = ["accounts_app"]

accounts_app = typer.Typer(
    no_args_is_help=True,
    help="Accounts (sending mailboxes): list and delete. Create one with `mailgate oauth configure --account NAME`.",
)


@accounts_app.command("list")
def accounts_list(
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False, data_dir: DataDir = None
) -> None:
    """Every account: name, mailbox, provider, token status, extra senders, queued and held messages."""
    summaries = run_with_services(data_dir, lambda s: s.accounts.list())
    if as_json:
        typer.echo(json.dumps([summary.to_dict() for summary in summaries], indent=2))
        return
    for a in summaries:
        senders = f"  also: {', '.join(a.senders)}" if a.senders else ""
        typer.echo(
            f"{a.name:16} {a.mailbox or '-':32} {a.provider or '-':10} {a.token_status:24} "
            f"queued {a.queued}  held {a.held}{senders}"
        )


@accounts_app.command("delete")
def accounts_delete(
    name: Annotated[str, typer.Argument(help="The account to delete (not default).")],
    force: Annotated[
        bool, typer.Option(help="Also when it has messages queued or held: they are marked failed ('account deleted').")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Revoke the account's refresh token (where the provider supports it) and delete its settings."""

    async def delete(services: Services) -> str:
        result = await services.accounts.delete(name, force=force)
        revoked = " (refresh token revoked at the provider)" if result.revoked_at_provider else ""
        failed = f"; {result.failed_messages} message(s) marked failed" if result.failed_messages else ""
        return f"Deleted account {name}{revoked}{failed}."

    typer.echo(run_with_services(data_dir, delete))

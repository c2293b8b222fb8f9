"""``mailgate oauth ...``: the OAuth page's settings (every grant), consent, status and disconnection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

import typer

from ..app import Services
from ..configure import OAuthConfigUpdate, OAuthView
from ..store.repository import DEFAULT_ACCOUNT
from .common import Account, DataDir, run_with_services

__all__ = ["oauth_app"]

oauth_app = typer.Typer(no_args_is_help=True, help="OAuth configuration and consent.")


@oauth_app.command("configure")
def oauth_configure(
    provider: Annotated[str, typer.Option(help="google, microsoft, sandbox, or one from the providers file.")],
    client_id: Annotated[
        str, typer.Option(help="Client ID of the app registration (service account: read from the key).")
    ] = "",
    client_secret: Annotated[
        str | None,
        typer.Option(help="Client secret (prompted for, hidden, when omitted and the grant needs one)."),
    ] = None,
    tenant: Annotated[str, typer.Option(help="Microsoft: Directory (tenant) ID or domain.")] = "",
    redirect_uri: Annotated[str, typer.Option(help="Authorized redirect URI (default from MAILGATE_BASE_URL).")] = "",
    grant: Annotated[
        str,
        typer.Option(help="authorization_code (a mailbox consents), client_credentials or service_account (app-only)."),
    ] = "authorization_code",
    mailbox: Annotated[str, typer.Option(help="App-only grants: the mailbox to send as (or impersonate).")] = "",
    certificate: Annotated[
        Path | None, typer.Option(help="client_credentials: PEM certificate registered in Entra (instead of a secret).")
    ] = None,
    private_key: Annotated[
        Path | None, typer.Option(help="client_credentials: the certificate's PEM private key (unencrypted).")
    ] = None,
    service_account_key: Annotated[
        Path | None, typer.Option(help="service_account: the JSON key file from the Google Cloud console.")
    ] = None,
    client_secret_expires_on: Annotated[
        str, typer.Option(help="When the client secret expires (YYYY-MM-DD): warnings 30, 7 and 1 days ahead.")
    ] = "",
    account: Account = DEFAULT_ACCOUNT,
    data_dir: DataDir = None,
) -> None:
    """Save the OAuth page's settings (of --account, created if new) from the command line."""
    files = {
        name: _read_text(path, name)
        for name, path in (
            ("--certificate", certificate),
            ("--private-key", private_key),
            ("--service-account-key", service_account_key),
        )
    }
    needs_secret = grant == "authorization_code" or (grant == "client_credentials" and certificate is None)
    if client_secret is None and needs_secret:
        client_secret = typer.prompt("Client secret", hide_input=True)
    update = OAuthConfigUpdate(
        provider=provider,
        client_id=client_id,
        client_secret=client_secret,
        tenant=tenant,
        redirect_uri=redirect_uri,
        grant=grant,
        mailbox=mailbox,
        certificate_pem=files["--certificate"],
        private_key_pem=files["--private-key"],
        service_account_key=files["--service-account-key"],
        client_secret_expires_on=client_secret_expires_on,
    )
    view = run_with_services(data_dir, lambda s: s.accounts.save_oauth(account, update))
    typer.echo(f"Saved. Token URL: {view.token_url}")
    if view.grant == "authorization_code":
        typer.echo(f"Authorized redirect URI: {view.redirect_uri}")
    else:
        typer.echo(f"App-only as {view.mailbox}: no consent needed. Next: mailgate email test --account {account}")


def _read_text(path: Path | None, option: str) -> str | None:
    """The text of a PEM or JSON file given on the command line (None when the option was not given)."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.secho(f"error: {option} {path} cannot be read as a text file ({exc})", fg="red", err=True)
        raise typer.Exit(2) from exc


@oauth_app.command("copy")
def oauth_copy(
    source: Annotated[str, typer.Option("--from", help="The account whose client settings are copied.")],
    account: Account = DEFAULT_ACCOUNT,
    data_dir: DataDir = None,
) -> None:
    """Give --account the client settings of another account (one app registration, several mailboxes)."""
    update = OAuthConfigUpdate(copy_from=source)
    view = run_with_services(data_dir, lambda s: s.accounts.save_oauth(account, update))
    typer.echo(f"Saved: {view.provider} client {view.client_id}. Next: mailgate oauth authorize --account {account}")


@oauth_app.command("authorize")
def oauth_authorize(account: Account = DEFAULT_ACCOUNT, data_dir: DataDir = None) -> None:
    """Authorize on a headless server: open the printed URL anywhere, then paste the URL you land on."""

    async def flow(services: Services) -> str:
        start = await services.consent.start(account_name=await services.accounts.require(account))
        typer.echo("1. Open this URL in a browser and sign in with the mailbox that will send:\n")
        typer.echo(f"   {start.url}\n")
        typer.echo("2. After consenting, the browser goes to the redirect URI (the page may fail to load: fine).")
        pasted = typer.prompt("3. Paste the full URL from the browser's address bar").strip()
        params = dict(parse_qsl(urlsplit(pasted).query))
        result = await services.consent.complete(binding=start.binding, params=params)
        return result.account

    account = run_with_services(data_dir, flow)
    typer.secho(f"Authorized{f' as {account}' if account else ''}. The refresh token is stored.", fg="green")


@oauth_app.command("status")
def oauth_status(account: Account = DEFAULT_ACCOUNT, data_dir: DataDir = None) -> None:
    """Show the OAuth configuration and the token status (never the secrets)."""

    async def status(services: Services) -> OAuthView:
        return await services.config.oauth_view(await services.accounts.require(account))

    view = run_with_services(data_dir, status)
    for key, value in view.to_dict().items():
        typer.echo(f"{key:24} {'' if value is None else value}")


@oauth_app.command("disconnect")
def oauth_disconnect(account: Account = DEFAULT_ACCOUNT, data_dir: DataDir = None) -> None:
    """Revoke the refresh token at the provider (where supported) and delete it here."""

    async def disconnect(services: Services) -> bool:
        return await services.consent.disconnect(await services.accounts.require(account))

    revoked = run_with_services(data_dir, disconnect)
    typer.echo("Disconnected" + (" (revoked at the provider)." if revoked else " (deleted locally)."))

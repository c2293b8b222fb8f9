"""``mailgate doctor``: every check an administrator would do by hand, each with pass/fail and the fix.

Order: the data dir's file modes (before anything opens it), then per account the configuration, the redirect
URI, the sender policy, a real token refresh, and the Test connection of the Email server page (connect, TLS
and the certificate's expiry, EHLO, AUTH, MAIL FROM of the sender; nothing is sent).  It works next to a
running ``mailgate serve``: it only reads the configuration, and a refresh is committed the way the server's
own are (one at a time per account, the rotated refresh token stored before use).
"""

from __future__ import annotations

import json
import stat
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ..app import Services
from ..config import Settings
from ..errors import MailgateError
from ..smtp.diagnose import failure_detail, test_connection
from ..store.crypto import KEY_FILE_NAME
from ..store.files import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from ..types import Authentication, TokenStatus
from .common import DataDir, load_settings, run, with_services

__all__ = ["Check", "account_checks", "file_checks", "register"]


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``fix`` says what to do when it failed."""

    check: str
    ok: bool
    detail: str
    fix: str = ""
    account: str = ""


# The Test connection's steps, in the order the doctor reports them (the last "ehlo" is the one after TLS).
_STEPS = (("connect", "SMTP connect"), ("tls", "TLS"), ("certificate", "TLS certificate"), ("ehlo", "EHLO"),
          ("auth", "AUTH"), ("sender", "sender accepted"))  # fmt: skip


def _mode_problem(path: Path, wanted: int) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} is {mode:04o} (other users can read it), not {wanted:04o}"
    return ""


def _can_open(settings: Settings) -> bool:
    """Whether opening the services would find the key (instead of creating a new one that decrypts nothing)."""
    if settings.secret_key:
        return settings.data_dir.is_dir() or bool(settings.database_url)
    return (settings.data_dir / KEY_FILE_NAME).is_file()


def file_checks(settings: Settings) -> list[Check]:
    """The data dir 0700 and the key file 0600, looked at before anything opens (and tightens) them."""
    data_dir = settings.data_dir
    if not data_dir.is_dir() and settings.database_url and settings.secret_key:
        return [Check("files", True, "no data dir: MAILGATE_DATABASE_URL and MAILGATE_SECRET_KEY are set")]
    if not data_dir.is_dir():
        return [
            Check(
                "files",
                False,
                f"The data dir {data_dir} does not exist.",
                "Point --data-dir (or MAILGATE_DATA_DIR) at the data dir `mailgate serve` uses.",
            )
        ]
    problems = [_mode_problem(data_dir, PRIVATE_DIR_MODE)]
    key = data_dir / KEY_FILE_NAME
    if not settings.secret_key:
        if key.is_file():
            problems.append(_mode_problem(key, PRIVATE_FILE_MODE))
        else:
            problems.append(f"{key} is missing and MAILGATE_SECRET_KEY is not set: stored secrets cannot be read")
    found = [p for p in problems if p]
    if found:
        return [
            Check(
                "files",
                False,
                "; ".join(found) + ".",
                f"Run chmod 700 {data_dir} and chmod 600 on the files in it (mailgate tightens them when it opens "
                "the data dir, as it did now); find what loosened them (a restore, a deployment script). A lost "
                "key file cannot be recreated: set MAILGATE_SECRET_KEY to the old key, or authorize again.",
            )
        ]
    where = "MAILGATE_SECRET_KEY" if settings.secret_key else f"{key.name} 0600"
    return [Check("files", True, f"{data_dir} 0700; key: {where}")]


async def _configuration(services: Services, account: str) -> list[Check]:
    settings = services.settings
    view = await services.config.oauth_view(account)
    server = await services.config.email_server(account)
    checks: list[Check] = []
    missing: list[str] = []
    oauth = server.authentication is Authentication.OAUTH
    if not server.host:
        missing.append("the Email server (host, port)")
    if server.authentication is not Authentication.NONE and not (server.username or view.account):
        missing.append("the Username")
    if oauth:
        if not view.provider:
            missing.append("the OAuth provider")
        elif services.catalogue.get(view.provider).requires_tenant and not view.tenant:
            missing.append("the Tenant (Directory ID)")
        if not view.client_id:
            missing.append("the Client ID")
        if not view.client_secret_set:
            missing.append("the Client Secret")
    if missing:
        detail = "Missing: " + ", ".join(missing) + "."
        checks.append(Check("configuration", False, detail, "Fill in and save the OAuth and Email server pages."))
    else:
        what = f"{view.provider} client {view.client_id}, " if oauth else ""
        detail = f"{what}{server.host}:{server.port} {server.security.value}, {server.authentication.value}"
        checks.append(Check("configuration", True, detail))
    if oauth and view.redirect_uri and view.redirect_uri != settings.default_redirect_uri:
        checks.append(
            Check(
                "redirect URI",
                False,
                f"The redirect URI {view.redirect_uri} is not the one of the base URL "
                f"({settings.default_redirect_uri}): the provider sends the browser somewhere mailgate is not.",
                f"Set MAILGATE_BASE_URL to mailgate's public URL, or set the redirect URI on the OAuth page to "
                f"{settings.default_redirect_uri}; register exactly that URI with the provider.",
            )
        )
    elif oauth:
        checks.append(Check("redirect URI", True, f"{view.redirect_uri} (register exactly this with the provider)"))
    sender = server.sender or server.username or view.account
    if sender and not await services.accounts.may_send(account, sender):
        checks.append(
            Check(
                "sender allowed",
                False,
                f"The sender {sender} is not one the account {account!r} may use.",
                "Set the sender to the account's mailbox, or add it to the account's senders (--also-from).",
            )
        )
    elif sender:
        checks.append(Check("sender allowed", True, f"{sender} may be used by account {account!r}"))
    return checks


async def _token_refresh(services: Services, account: str) -> Check:
    view = await services.config.oauth_view(account)
    if not view.refresh_token_set:
        return Check(
            "token refresh",
            False,
            "Not authorized yet: there is no refresh token.",
            "Open the OAuth page and click Authorize (or run `mailgate oauth authorize`).",
        )
    tokens = services.tokens
    before = tokens.refresh_requests
    try:
        await tokens.access_token(account)
        if tokens.refresh_requests == before:
            # The stored access token was still fresh: refresh for real, the way a rejected token is.
            await tokens.access_token(account, force_refresh=True)
    except MailgateError as exc:
        return Check("token refresh", False, failure_detail(exc), exc.hint)
    view = await services.config.oauth_view(account)
    until = view.access_token_expires_at
    detail = "The provider issued a new access token" + (f", valid until {until:%Y-%m-%d %H:%M} UTC" if until else "")
    return Check("token refresh", True, detail + (f" (mailbox {view.account})" if view.account else ""))


async def account_checks(services: Services, account: str, *, now: datetime | None = None) -> list[Check]:
    """The checks of one account, in order; the SMTP ones are the Test connection's steps."""
    checks = await _configuration(services, account)
    server = await services.config.email_server(account)
    if server.authentication is Authentication.OAUTH:
        view = await services.config.oauth_view(account)
        if view.token_status is TokenStatus.REAUTHORIZATION_REQUIRED:
            detail = f"Re-authorization needed: {view.token_status_reason}"
            checks.append(Check("token refresh", False, detail, "Open the OAuth page and click Authorize."))
        else:
            checks.append(await _token_refresh(services, account))
    if server.delivery.over_http:
        # Graph / Gmail API: the token and a request that needs the send permission, nothing sent.
        for probed in await services.mailer.probe(account):
            checks.append(Check(f"{server.delivery.value} {probed.name}", probed.ok, probed.detail, probed.hint))
    elif server.host:
        sender = server.sender or server.username or (await services.config.oauth_view(account)).account
        steps = await test_connection(
            server,
            services.mailer.token_source(server, account),
            check_sender=sender or None,
            certificate_now=now or datetime.now(UTC),
        )
        last = {step.name: step for step in steps}
        for name, label in _STEPS:
            if (step := last.get(name)) is not None:
                checks.append(Check(label, step.ok, step.detail, step.hint))
    return [Check(c.check, c.ok, c.detail, c.fix, account) for c in checks]


async def _opened(settings: Settings, account: str | None) -> list[Check]:
    """The account checks; a database that cannot be opened is a failed check (the JSON stays a list)."""
    try:
        return await with_services(settings, lambda services: _all(services, account))
    except MailgateError as exc:
        return [Check("database", False, failure_detail(exc), exc.hint)]


async def _all(services: Services, account: str | None) -> list[Check]:
    names = [account] if account else await services.accounts.names()
    if account and not await services.accounts.exists(account):
        return [Check("account", False, f"There is no account {account!r}.", "`mailgate accounts list` lists them.")]
    if not names:
        return [Check("account", False, "No account is configured.", "Fill in the OAuth and Email server pages.")]
    checks: list[Check] = []
    for name in names:
        checks.extend(await account_checks(services, name))
    return checks


def _print(checks: list[Check]) -> None:
    account = None
    for c in checks:
        if c.account != account and c.account:
            account = c.account
            typer.echo(f"account {account}")
        mark = typer.style("PASS", fg="green") if c.ok else typer.style("FAIL", fg="red")
        typer.echo(f"  {mark} {c.check:16} {c.detail}")
        if not c.ok and c.fix:
            typer.echo(f"       what to do: {c.fix}")


def register(app: typer.Typer) -> None:
    """Add ``mailgate doctor`` to ``app``."""

    @app.command()
    def doctor(
        account: Annotated[
            str | None, typer.Option("--account", help="Check only this account (default: every account).")
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print a JSON list of {check, ok, detail, fix, account}.")
        ] = False,
        data_dir: DataDir = None,
    ) -> None:
        """Check the configuration, file modes, token refresh, SMTP connect, TLS, EHLO, AUTH and the sender;
        each with pass/fail and the fix.  Exit status 0 only when every check passes."""
        settings = load_settings(data_dir)
        checks = file_checks(settings)
        if _can_open(settings):
            checks += run(_opened(settings, account))
        if as_json:
            typer.echo(json.dumps([asdict(c) for c in checks], indent=2))
        else:
            _print(checks)
        if not all(c.ok for c in checks):
            raise typer.Exit(1)

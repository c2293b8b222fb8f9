"""The ``mailgate`` command.  The only code besides web/ that reads the environment."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..app import Services, build_services
from ..configure import EmailServerUpdate
from ..errors import MailgateError
from ..relay import RelayServer
from ..store.repository import DEFAULT_ACCOUNT
from .accounts import accounts_app
from .common import Account, DataDir, load_settings, on_stop_signals, report, run, run_with_services
from .doctor import register as register_doctor
from .oauth import oauth_app
from .outbox import register as register_outbox
from .relay import register as register_relay

#: What ``mailgate --help`` says (the module docstring is for the code's readers, not the command's users).
HELP = (
    "Send email through Gmail / Google Workspace and Microsoft 365 with OAuth 2.0 instead of a password: "
    "run the server (serve, worker), try it with the local sandbox, and configure and test it from here."
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP)
email_app = typer.Typer(no_args_is_help=True, help="Email server configuration and tests.")
apikey_app = typer.Typer(no_args_is_help=True, help="API keys for applications (Authorization: Bearer).")
app.add_typer(oauth_app, name="oauth")
app.add_typer(email_app, name="email")
app.add_typer(apikey_app, name="apikey")
app.add_typer(accounts_app, name="accounts")
register_outbox(app)
register_relay(app)
register_doctor(app)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    data_dir: DataDir = None,
    worker: Annotated[
        bool, typer.Option(help="Deliver the outbox in this process (--no-worker: `mailgate worker` does).")
    ] = True,
    relay_port: Annotated[
        int | None,
        typer.Option(help="Run the SMTP relay (STARTTLS) on this port (default: MAILGATE_RELAY_PORT, else off)."),
    ] = None,
) -> None:
    """Run the admin UI, the REST API, the OAuth redirect endpoint, the outbox worker and the SMTP relay."""
    import dataclasses

    import uvicorn

    from ..outbox import Worker
    from ..web import create_app
    from ..web.accesslog import AccessLog
    from ..web.connections import ConnectionGuard, raise_open_file_limit
    from ..web.logfilter import install_log_redaction

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Without MAILGATE_BASE_URL, the redirect URI follows the port listened on (not 8080 on any port).
    settings = load_settings(data_dir, listen_port=port)
    if relay_port is not None:
        settings = dataclasses.replace(settings, relay=dataclasses.replace(settings.relay, port=relay_port))

    async def main() -> None:
        services = await build_services(settings)
        try:
            generated = await services.admins.ensure_admin(settings.admin_password)
            if generated:
                typer.secho(
                    f"\n  First start: the password of user 'admin' is  {generated}\n"
                    "  It is shown only this once (set MAILGATE_ADMIN_PASSWORD to choose your own).\n",
                    fg=typer.colors.YELLOW,
                )
            typer.echo(f"mailgate on http://{host}:{port}{settings.context_path}/  (data: {settings.data_dir})")
            typer.echo(f"REST API documentation: http://{host}:{port}{settings.api_prefix}/docs")
            typer.echo(f"Authorized redirect URI to register at the provider: {settings.default_redirect_uri}")
            # mailgate's access log, not uvicorn's (see web/accesslog.py: the same lines, a fraction of the CPU).
            app = AccessLog(create_app(services))
            # Each connection is an open file: raise the soft limit, then cap connections well below it and drop
            # clients that do not send their request headers in time (see web/connections.py).
            raise_open_file_limit()
            guard = ConnectionGuard(settings.http)
            logging.getLogger("mailgate").info(
                "HTTP: at most %d connections, request headers within %gs",
                guard.max_connections,
                guard.header_timeout,
            )
            # proxy_headers=False: uvicorn would believe X-Forwarded-For from 127.0.0.1 (its default
            # forwarded_allow_ips); mailgate's TrustedProxies believes only MAILGATE_TRUSTED_PROXIES.
            config = uvicorn.Config(
                guard.wrap(app),
                host=host,
                port=port,
                log_level="info",
                access_log=False,
                http=guard.protocol,
                proxy_headers=False,
            )
            server = uvicorn.Server(config)
            install_log_redaction()  # after uvicorn configured its loggers
            relay = await _start_relay(services) if settings.relay.enabled else None
            delivery = Worker(services.outbox, services.mailer) if worker else None
            task = asyncio.create_task(delivery.run(), name="outbox-worker") if delivery else None
            # Alerts run where the worker runs (with --no-worker, `mailgate worker` sends them).
            alerts = asyncio.create_task(services.notifier.run(), name="alert-notifier") if delivery else None

            if delivery is not None:
                services.keepalive.start()  # idle grants are refreshed where mail is delivered

            def stop() -> None:
                if delivery is not None:
                    delivery.stop()
                services.notifier.stop()

            # SIGTERM/SIGINT: uvicorn shuts the HTTP server down, then the worker finishes its messages and
            # the database is closed below (the process exits with 0).
            on_stop_signals(stop)
            try:
                await server.serve()
            finally:
                if relay is not None:
                    await relay.stop()  # first: no new message while the worker finishes
                stop()
                if task is not None:
                    await task
                if alerts is not None:
                    await alerts
        finally:
            await services.aclose()

    run(main())


async def _start_relay(services: Services) -> RelayServer:
    """Start the SMTP relay of ``mailgate serve`` and print where, and the certificate to trust."""
    from ..relay import create_relay

    settings = services.settings
    server, certificate = create_relay(
        settings.relay,
        settings.data_dir,
        users=services.relay_users,
        outbox=services.outbox,
        sender_allowed=services.accounts.may_send,
        metrics=services.relay_metrics,
    )
    listening = await server.start()
    if listening.port is not None:
        typer.echo(f"SMTP relay on {listening.host}:{listening.port} (STARTTLS, then AUTH PLAIN or LOGIN)")
    if listening.tls_port is not None:
        typer.echo(f"SMTP relay on {listening.host}:{listening.tls_port} (implicit TLS, then AUTH PLAIN or LOGIN)")
    origin = "generated" if certificate.generated else "configured"
    typer.echo(f"Relay certificate ({origin}, {certificate.cert_path}) SHA-256 fingerprint: {certificate.fingerprint}")
    if settings.relay.trusted_networks:
        networks = ", ".join(str(n) for n in settings.relay.trusted_networks)
        typer.echo(f"Relay without AUTH for: {networks}")
    return server


@app.command()
def sandbox(
    http_port: Annotated[int, typer.Option(help="Port of the OAuth endpoints and the inbox.")] = 8765,
    smtp_port: Annotated[int, typer.Option(help="Port of the SMTP server (STARTTLS).")] = 8587,
    access_token_lifetime: Annotated[int, typer.Option(help="Seconds an access token lives.")] = 3600,
    rotate: Annotated[bool, typer.Option(help="Rotate refresh tokens like Microsoft (--no-rotate: Google).")] = True,
    state_dir: Annotated[Path, typer.Option(help="Where the CA certificate and messages are written.")] = Path(
        "mailgate-sandbox"
    ),
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option(
            "--redirect-uri",
            envvar="MAILGATE_SANDBOX_REDIRECT_URI",  # sandbox.config.REDIRECT_URI_ENV (not imported: heavy)
            help="Redirect URI the sandbox client accepts (repeatable). Default: mailgate's own, from "
            "MAILGATE_BASE_URL and MAILGATE_CONTEXT_PATH.",
        ),
    ] = None,
) -> None:
    """Run the local test provider: consent page, token endpoint, SMTP server and inbox, on 127.0.0.1."""
    from ..sandbox import SandboxConfig, run_forever
    from ..sandbox.config import DEFAULT_CLIENT

    # The same default as mailgate's own redirect URI, so the two agree when both read the same environment.
    uris = redirect_uri or [load_settings().default_redirect_uri]
    run_forever(
        SandboxConfig(
            http_port=http_port,
            smtp_port=smtp_port,
            access_token_lifetime=access_token_lifetime,
            rotate_refresh_tokens=rotate,
            state_dir=state_dir,
            clients=(DEFAULT_CLIENT.with_redirect_uris(uris),),
        )
    )


@email_app.command("configure")
def email_configure(
    host: Annotated[
        str | None,
        typer.Option(help="SMTP host, e.g. smtp.gmail.com or smtp.office365.com (delivery smtp; default: kept)."),
    ] = None,
    delivery: Annotated[
        str | None,
        typer.Option(
            help="smtp, graph (Microsoft Graph sendMail) or gmail_api (Gmail API); default: kept. graph and "
            "gmail_api need no host, and a change needs a new consent (`mailgate oauth authorize`)."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="587 (starttls) or 465 (ssl).")] = 587,
    security: Annotated[str, typer.Option(help="starttls, ssl or none.")] = "starttls",
    authentication: Annotated[str, typer.Option(help="oauth, password or none.")] = "oauth",
    username: Annotated[str, typer.Option(help="Mailbox to sign in as (default: the consenting account).")] = "",
    sender: Annotated[str, typer.Option(help="From address (default: the consenting account).")] = "",
    ca_file: Annotated[str, typer.Option(help="PEM file of the CA that signed the server certificate.")] = "",
    also_from: Annotated[
        list[str] | None,
        typer.Option(
            "--also-from", help="Another From the account may use: an alias or *@domain (repeatable; replaces)."
        ),
    ] = None,
    account: Account = DEFAULT_ACCOUNT,
    data_dir: DataDir = None,
) -> None:
    """Save the Email server page's settings (of --account, created if new) from the command line."""
    password = None
    if authentication == "password":
        password = typer.prompt("SMTP password", hide_input=True)
    update = EmailServerUpdate(
        host=host,
        port=port,
        security=security,
        authentication=authentication,
        username=username,
        sender=sender,
        password=password,
        ca_file=ca_file,
        delivery=delivery,
    )
    run_with_services(data_dir, lambda s: s.accounts.save_email_server(account, update, also_from))
    typer.echo("Saved.")


@email_app.command("test")
def email_test(
    send_to: Annotated[str | None, typer.Option(help="Also send a test message to this address.")] = None,
    account: Account = DEFAULT_ACCOUNT,
    data_dir: DataDir = None,
) -> None:
    """Connect, TLS, EHLO, AUTH (HTTP delivery: token, permission) and optionally send: each step with what to
    do on failure."""

    async def test(services: Services) -> bool:
        steps = await services.mailer.test(send_to=send_to, account=await services.accounts.require(account))
        for step in steps:
            mark = typer.style("PASS", fg="green") if step.ok else typer.style("FAIL", fg="red")
            typer.echo(f"{mark} {step.name:8} {step.detail}")
            if not step.ok and step.hint:
                typer.echo(f"     what to do: {step.hint}")
        return all(s.ok for s in steps)

    if not run_with_services(data_dir, test):
        raise typer.Exit(1)


@app.command()
def send(
    to: Annotated[list[str], typer.Option("--to", help="Recipient (repeatable).")],
    subject: Annotated[str, typer.Option(help="Subject.")],
    body: Annotated[str, typer.Option(help="Plain-text body ('-' reads standard input).")],
    attach: Annotated[list[Path] | None, typer.Option("--attach", help="File to attach (repeatable).")] = None,
    sender: Annotated[str, typer.Option("--from", help="From address (default: the configured sender).")] = "",
    account: Annotated[
        str | None, typer.Option(help="Account to send through (default: the one whose senders include --from).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Send one message now through an account's Email server (not through the outbox)."""
    from ..smtp import Attachment, build_message

    text = sys.stdin.read() if body == "-" else body
    attachments = []
    for path in attach or []:
        if not path.is_file():
            typer.secho(f"error: attachment {path} is not a readable file", fg="red", err=True)
            raise typer.Exit(2)
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        attachments.append(Attachment(filename=path.name, content_type=ctype, data=path.read_bytes()))

    async def deliver(services: Services) -> str:
        name = await services.accounts.route(sender or None, account)
        server = await services.mailer.server(name)
        message = build_message(
            sender=sender or server.sender or server.username,
            to=to,
            subject=subject,
            text=text,
            attachments=attachments,
        )
        result = await services.mailer.send(message, name)
        refused = "".join(f"\n  refused {addr}: {code} {reply}" for addr, (code, reply) in result.refused.items())
        return f"Sent {message['Message-ID']} to {', '.join(result.accepted)}{refused}"

    typer.echo(run_with_services(data_dir, deliver))


@apikey_app.command("create")
def apikey_create(name: Annotated[str, typer.Argument(help="What the key is for.")], data_dir: DataDir = None) -> None:
    """Create an API key; it is shown only this once."""
    key = run_with_services(data_dir, lambda s: s.admins.create_api_key(name))
    typer.echo(f"API key {key.id} ({key.name}): {key.key}\nShown only once: store it in your application.")


@apikey_app.command("list")
def apikey_list(data_dir: DataDir = None) -> None:
    """List API keys (their first characters only)."""
    for row in run_with_services(data_dir, lambda s: s.admins.list_api_keys()):
        typer.echo(f"{row['id']:>4}  {row['prefix']}…  {row['name']}  created {row['created_at']}")


@apikey_app.command("delete")
def apikey_delete(key_id: int, data_dir: DataDir = None) -> None:
    """Delete an API key: applications using it are refused from then on."""
    run_with_services(data_dir, lambda s: s.admins.delete_api_key(key_id))
    typer.echo("Deleted.")


def main() -> None:
    try:
        app()
    except MailgateError as exc:  # e.g. raised while reading the settings
        report(exc)
        sys.exit(1)

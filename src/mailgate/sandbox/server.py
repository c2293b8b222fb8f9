"""The sandbox's lifecycle: certificates, the HTTP server (uvicorn) and the SMTP server, in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme
import uvicorn

from .config import SandboxConfig
from .grant_failures import GrantFailures
from .inbox import Inbox, ReceivedMessage
from .mail_api import MailApi
from .oauth_app import create_app
from .smtp_faults import SmtpFaults, smtp_faults_router
from .smtp_server import SmtpServer
from .state import SandboxState

__all__ = ["Sandbox", "run_forever"]

_CA_FILE = "sandbox-ca.pem"
_CA_KEY_FILE = "sandbox-ca-key.pem"
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_BUNDLED = ("sandbox", "microsoft", "google")


def _url_host(host: str) -> str:
    """The host to put in URLs: a wildcard bind address is reached through loopback."""
    if host in ("", "0.0.0.0"):  # noqa: S104  (a comparison, not a bind)
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _load_or_create_ca(directory: Path, persist: bool) -> trustme.CA:
    """The sandbox CA; with a persistent state dir the same CA is reused across restarts, so a ``ca_file``
    configured in mailgate keeps working."""
    cert_path, key_path = directory / _CA_FILE, directory / _CA_KEY_FILE
    if persist and cert_path.is_file() and key_path.is_file():
        with contextlib.suppress(ValueError, TypeError):
            return trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
    ca = trustme.CA(organization_name="mailgate sandbox")
    ca.cert_pem.write_to_path(str(cert_path))
    if persist:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as key_file:
            key_file.write(ca.private_key_pem.bytes())
    return ca


class Sandbox:
    """A local OAuth 2.0 provider and SMTP server, run on the current event loop.

    ``async with Sandbox(SandboxConfig(http_port=0, smtp_port=0)) as sandbox:`` starts both servers on
    free ports; ``base_url``, ``http_port``, ``smtp_port`` and ``ca_file`` say where they are.
    """

    def __init__(self, config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config or SandboxConfig()
        #: Clients, codes, tokens, counters (see :class:`~mailgate.sandbox.state.SandboxState`).
        self.state = SandboxState(self.config, clock=clock)
        #: The messages the SMTP server accepted.
        self.inbox = Inbox()
        #: The Graph and Gmail API endpoints' switches: throttling, a removed permission, size limits.
        self.mail_api = MailApi()
        #: SMTP-side failures switched on per mailbox (``POST /_control/smtp-fault``).
        self.smtp_faults = SmtpFaults()
        self._state_dir: Path | None = None
        self._temp_dir: Path | None = None
        self._ca: trustme.CA | None = None
        self._smtp: SmtpServer | None = None
        self._http: uvicorn.Server | None = None
        self._http_socket: socket.socket | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._http_port = 0
        self._smtp_port = 0

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Generate the certificates and start the HTTP and SMTP servers."""
        if self._http is not None:
            raise RuntimeError("the sandbox is already running")
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        if self.config.state_dir is not None:
            self._state_dir = self.config.state_dir.resolve()
            self._state_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._temp_dir = self._state_dir = Path(tempfile.mkdtemp(prefix="mailgate-sandbox-"))
        self.inbox.directory = self._state_dir if self.config.state_dir is not None else None
        self._ca = _load_or_create_ca(self._state_dir, persist=self.config.state_dir is not None)
        hosts = {"127.0.0.1", "localhost", "::1", _url_host(self.config.host).strip("[]")}
        not_after = None
        if self.config.smtp_certificate_days is not None:  # a certificate close to expiry, on request
            not_after = datetime.now(UTC) + timedelta(days=self.config.smtp_certificate_days)
        leaf = self._ca.issue_cert(*sorted(hosts), not_after=not_after)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(tls)

        smtp = SmtpServer(self.config, self.state, self.inbox, tls, self.smtp_faults)
        self._smtp = smtp
        self._smtp_port = await smtp.start(self.config.host, self.config.smtp_port)

        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when proto says TCP
        # (with proto 0 every response waits ~40 ms for a delayed ACK).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._http_socket = sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.http_port))
        sock.setblocking(False)
        self._http_port = int(sock.getsockname()[1])
        app = create_app(self.state, self.inbox, self._facts, self.mail_api)
        app.include_router(smtp_faults_router(self.smtp_faults))
        # No logging configuration and no access log: the log would carry query strings of the flow.
        uv_config = uvicorn.Config(
            app,
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        uv_config.load()
        server = uvicorn.Server(uv_config)
        server.lifespan = uv_config.lifespan_class(uv_config)
        # startup() and main_loop() rather than serve(): serve() would take over the process's signals.
        await server.startup(sockets=[sock])
        self._http = server
        self._http_task = asyncio.get_running_loop().create_task(server.main_loop())
        self._write_state_files()

    async def stop(self) -> None:
        """Stop both servers and drop open connections; removes the temporary state dir, if one was made."""
        if self._smtp is not None:
            await self._smtp.stop()
        self._smtp = None
        server, self._http = self._http, None
        if server is not None:
            server.should_exit = True
            if self._http_task is not None:
                # main_loop() only ticks the Date header; no need to wait up to 0.1 s for its next tick.
                self._http_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._http_task
            await server.shutdown(sockets=[self._http_socket] if self._http_socket else None)
        elif self._http_socket is not None:
            self._http_socket.close()
        self._http_task = None
        self._http_socket = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- where it is ----------------------------------------------------------------------------------

    def _running(self) -> None:
        if self._http is None:
            raise RuntimeError("the sandbox is not running: await sandbox.start() first")

    @property
    def http_port(self) -> int:
        """The port the HTTP server listens on (the real one when the config said 0)."""
        self._running()
        return self._http_port

    @property
    def smtp_port(self) -> int:
        """The port the SMTP server listens on (STARTTLS)."""
        self._running()
        return self._smtp_port

    @property
    def smtp_host(self) -> str:
        return _url_host(self.config.host).strip("[]")

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the HTTP server, without a trailing slash."""
        return f"http://{_url_host(self.config.host)}:{self.http_port}"

    @property
    def state_dir(self) -> Path:
        self._running()
        assert self._state_dir is not None
        return self._state_dir

    @property
    def ca_file(self) -> Path:
        """The PEM file of the CA that issued the SMTP certificate: mailgate's ``ca_file``."""
        return self.state_dir / _CA_FILE

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the sandbox CA (for test clients)."""
        self._running()
        assert self._ca is not None
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def authorization_url(self, tenant: str = "sandbox") -> str:
        """The Microsoft-shaped authorization endpoint for ``tenant``."""
        return f"{self.base_url}/{tenant}/oauth2/v2.0/authorize"

    def token_url(self, tenant: str = "sandbox") -> str:
        """The Microsoft-shaped token endpoint for ``tenant``."""
        return f"{self.base_url}/{tenant}/oauth2/v2.0/token"

    def providers_toml(self, *names: str) -> str:
        """TOML for ``MAILGATE_PROVIDERS_FILE`` that points ``sandbox`` (and each of ``names``) here.

        ``google`` gets Google's path shapes (``/o/oauth2/v2/auth``, ``/token``), every other name the
        Microsoft ones with ``{tenant}`` in the path.  Names that are not bundled providers are added
        as complete providers.
        """
        base = self.base_url
        blocks = []
        for name in dict.fromkeys(("sandbox", *names)):
            if not _PROVIDER_NAME.match(name):
                raise ValueError(f"provider name {name!r} must be lowercase letters and digits")
            if name == "google":
                auth, token = f"{base}/o/oauth2/v2/auth", f"{base}/token"
            else:
                auth, token = f"{base}/{{tenant}}/oauth2/v2.0/authorize", f"{base}/{{tenant}}/oauth2/v2.0/token"
            lines = [f"[providers.{name}]"]
            if name not in _BUNDLED:
                lines += [
                    f'label = "Sandbox ({name})"',
                    'scopes = ["https://outlook.office.com/SMTP.Send", "offline_access", "openid", "email"]',
                    'default_tenant = "sandbox"',
                ]
            lines += [
                f'authorization_url = "{auth}"',
                f'token_url = "{token}"',
                f'revocation_url = "{base}/revoke"',
                f'graph_url = "{base}"' if name != "google" else f'gmail_url = "{base}"',
                *([f'gmail_url = "{base}"'] if name == "sandbox" else []),
                f'smtp_host = "{self.smtp_host}"',
                f"smtp_port = {self.smtp_port}",
                'smtp_security = "starttls"',
            ]
            blocks.append("\n".join(lines))
        return "# Generated by the mailgate sandbox: these providers point at it.\n" + "\n\n".join(blocks) + "\n"

    def _facts(self) -> list[tuple[str, str]]:
        client = self.config.clients[0]
        return [
            ("Authorization URL", self.authorization_url("{tenant}")),
            ("Token URL", self.token_url("{tenant}")),
            ("Google-shaped URLs", f"{self.base_url}/o/oauth2/v2/auth  {self.base_url}/token"),
            ("Revocation URL", f"{self.base_url}/revoke"),
            ("Default tenant", "sandbox"),
            ("SMTP server", f"{self.smtp_host}:{self.smtp_port} (STARTTLS; XOAUTH2, OAUTHBEARER)"),
            ("Graph sendMail (graph_url)", f"{self.base_url}/v1.0/users/{{mailbox}}/sendMail"),
            ("Gmail API send (gmail_url)", f"{self.base_url}/upload/gmail/v1/users/me/messages/send"),
            ("Client ID", client.client_id),
            ("Client secret", client.client_secret),
            ("Redirect URI", "\n".join(client.redirect_uris)),
            ("CA file (ca_file)", str(self.ca_file)),
            ("Account", self.config.default_account),
        ]

    def describe(self) -> str:
        """Human-readable summary: URLs, client credentials (test data) and the CA file."""
        width = max(len(label) for label, _ in self._facts())
        lines = [f"  {label.ljust(width)}  {value}" for label, value in self._facts()]
        return "\n".join(
            ["mailgate sandbox (test data only)", *lines, f"  {'Inbox'.ljust(width)}  {self.base_url}/inbox"]
        )

    def _write_state_files(self) -> None:
        # For tests that run the sandbox as a subprocess on port 0: where is everything?
        info = {
            "base_url": self.base_url,
            "http_port": self.http_port,
            "smtp_host": self.smtp_host,
            "smtp_port": self.smtp_port,
            "ca_file": str(self.ca_file),
            "pid": os.getpid(),
        }
        (self.state_dir / "providers.toml").write_text(self.providers_toml(), encoding="utf-8")
        (self.state_dir / "sandbox.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    # --- control (the same as the /_control endpoints) -----------------------------------------------

    def revoke_all(self) -> int:
        """Every refresh token becomes invalid (``invalid_grant`` on the next refresh)."""
        return self.state.revoke_all()

    def expire_access_tokens(self) -> int:
        """Every access token issued so far is expired (SMTP refuses it)."""
        return self.state.expire_access_tokens()

    @property
    def failures(self) -> GrantFailures:
        """The grant failures to switch on (the same as their ``/_control`` endpoints)."""
        return self.state.failures

    def set_token_endpoint_available(self, available: bool) -> None:
        """While False, the token endpoint answers 503."""
        self.state.token_endpoint_available = available

    def stats(self) -> dict[str, Any]:
        """Counters (``GET /_control/stats``)."""
        return self.state.stats()

    def reset_stats(self) -> None:
        self.state.reset_stats()

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Messages received, oldest first."""
        return self.inbox.messages()

    def register_app_certificate(self, client_id: str = "", certificate_pem: str = "") -> dict[str, str]:
        """Register a certificate for an app registration (``POST /_control/app-certificates``)."""
        return self.state.app_only.register_certificate(client_id or self.config.clients[0].client_id, certificate_pem)

    def register_service_account(
        self, *, scopes: tuple[str, ...] = ("https://mail.google.com/",), mailboxes: tuple[str, ...] = ()
    ) -> dict[str, str]:
        """A new service account allowed ``scopes`` for ``mailboxes``: its JSON key file's fields."""
        answer = self.state.app_only.register_service_account(scopes=scopes, mailboxes=mailboxes)
        return {**answer, "token_uri": f"{self.base_url}/token"}

    def mint_tokens(self, account: str = "", *, client_id: str = "", scope: str = "") -> dict[str, object]:
        """Tokens for ``account`` without the consent flow (for SMTP tests); not counted in the stats."""
        issuer = f"{self.base_url}/sandbox/v2.0" if self._http is not None else ""
        return self.state.mint_tokens(
            account or self.config.default_account, client_id=client_id, scope=scope, issuer=issuer
        )


async def _serve(config: SandboxConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Sandbox(config) as sandbox:
        print(sandbox.describe())
        if (sandbox.http_port, sandbox.smtp_port) != (8765, 8587) or sandbox.smtp_host != "127.0.0.1":
            print(f"  Not the default ports: set MAILGATE_PROVIDERS_FILE={sandbox.state_dir / 'providers.toml'}")
        print("Press Ctrl+C to stop.", flush=True)
        await stop.wait()


def run_forever(config: SandboxConfig | None = None) -> None:
    """Run a sandbox until Ctrl+C / SIGTERM (the ``mailgate sandbox`` command)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config or SandboxConfig()))

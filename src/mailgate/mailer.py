"""Sending with the configured Email server: one place that pairs its settings with the OAuth token source.

The outbox worker (through :meth:`Mailer.transport`), the CLI ``send`` command and the server test all go
through here.  The account's delivery picks the transport: SMTP, Microsoft Graph or the Gmail API.
"""

from __future__ import annotations

from email.message import EmailMessage

import httpx

from .configure import ConfigService
from .errors import ConfigurationError, MailgateError
from .gmail import GmailTransport
from .graph import GraphTransport
from .httpsend import HttpTransport
from .oauth import TokenManager
from .providers import Catalogue
from .smtp import SmtpConnection, Step, TokenSource, build_message, test_connection
from .smtp.transaction import envelope, flatten
from .store.repository import DEFAULT_ACCOUNT
from .transport import SendResult, Transport
from .types import Authentication, Delivery, EmailServerConfig

__all__ = ["Mailer"]


class Mailer:
    """Builds the transport of the configured Email server, and sends or tests with it.

    Keeps one ``httpx.AsyncClient`` per account for the HTTP deliveries (connection reuse across messages and
    the account's transports); :meth:`aclose` closes them.
    """

    def __init__(self, config: ConfigService, tokens: TokenManager, catalogue: Catalogue) -> None:
        self._config = config
        self._tokens = tokens
        self._catalogue = catalogue
        self._clients: dict[str, httpx.AsyncClient] = {}

    async def aclose(self) -> None:
        """Close the HTTP clients of the accounts."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    async def server(self, account: str = DEFAULT_ACCOUNT) -> EmailServerConfig:
        """The account's Email server, or ConfigurationError when it has none."""
        server = await self._config.email_server(account)
        if not server.host and not server.delivery.over_http:
            raise ConfigurationError(
                "The Email server is not configured"
                + ("." if account == DEFAULT_ACCOUNT else f" for account {account!r}."),
                hint="Fill in and save the Email server page (host, port).",
            )
        return server

    def token_source(self, server: EmailServerConfig, account: str = DEFAULT_ACCOUNT) -> TokenSource | None:
        """The account's access tokens when the server authenticates with OAuth, else None."""
        return self._tokens.source(account) if server.authentication is Authentication.OAUTH else None

    def transport(self, server: EmailServerConfig, account: str = DEFAULT_ACCOUNT) -> Transport:
        """The account's transport for ``server``, not connected yet (the worker's default transport factory)."""
        if server.delivery.over_http:
            return self.http_transport(server, account)
        return SmtpConnection(server, self.token_source(server, account))

    def http_transport(self, server: EmailServerConfig, account: str = DEFAULT_ACCOUNT) -> HttpTransport:
        """The Graph or Gmail API transport of the account (``server.delivery`` must be an HTTP one)."""
        delivery = server.delivery

        async def base_url() -> str:
            view = await self._config.oauth_view(account)
            spec = self._catalogue.providers.get(view.provider)
            url = (spec.graph_url if delivery is Delivery.GRAPH else spec.gmail_url) if spec else ""
            if not url:
                raise ConfigurationError(
                    f"Delivery {delivery.value} needs a provider with an API URL; the account's provider is "
                    f"{view.provider or 'not set'}.",
                    hint="Choose Microsoft (graph) or Google (gmail_api) on the OAuth page, or Delivery SMTP.",
                )
            return url

        client = self._clients.get(account)
        if client is None:
            # TLS verified (system store, or SSL_CERT_FILE); no redirects: a token must not follow one.
            client = httpx.AsyncClient(
                timeout=server.timeout, follow_redirects=False, headers={"User-Agent": "mailgate"}
            )
            self._clients[account] = client
        kind = GraphTransport if delivery is Delivery.GRAPH else GmailTransport
        return kind(server, self._tokens.source(account), client, base_url)

    async def connection(self, account: str = DEFAULT_ACCOUNT) -> SmtpConnection:
        """A connection to the account's server, not yet opened (``async with`` opens and closes it)."""
        server = await self.server(account)
        return SmtpConnection(server, self.token_source(server, account))

    async def send(self, message: EmailMessage, account: str = DEFAULT_ACCOUNT) -> SendResult:
        server = await self.server(account)
        if server.delivery.over_http:
            return await _send_over_http(self.http_transport(server, account), message, None)
        async with await self.connection(account) as conn:
            return await conn.send_message(message)

    async def probe(self, account: str = DEFAULT_ACCOUNT) -> list[Step]:
        """The checks of the account's HTTP delivery that send nothing: an access token, then the API's
        answer to a request that needs the send permission (for Test connection and ``mailgate doctor``)."""
        server = await self.server(account)
        if not server.delivery.over_http:
            raise ConfigurationError(f"Account {account!r} delivers over SMTP: use test() for its checks.")
        return await self.http_transport(server, account).probe()

    async def test(self, *, send_to: str | None = None, account: str = DEFAULT_ACCOUNT) -> list[Step]:
        """Connect, TLS, EHLO, AUTH (HTTP delivery: token, permission), and with ``send_to`` a short test
        message: each step's outcome."""
        server = await self.server(account)
        if not server.delivery.over_http:
            return await test_connection(server, self.token_source(server, account), send_to=send_to)
        transport = self.http_transport(server, account)
        steps = await transport.probe()
        if send_to is None or not all(step.ok for step in steps):
            return steps
        message = build_message(
            sender=server.sender or server.username or "mailgate@localhost",
            to=[send_to],
            subject="mailgate test message",
            text="This message was sent by mailgate to test the email server settings.",
        )
        try:
            result = await _send_over_http(transport, message, [send_to])
        except MailgateError as exc:
            return [*steps, Step("send", False, exc.message, exc.hint)]
        return [*steps, Step("send", True, f"accepted: {', '.join(result.accepted)}; {transport.api}: {result.reply}")]


async def _send_over_http(transport: HttpTransport, message: EmailMessage, recipients: list[str] | None) -> SendResult:
    """Send an EmailMessage: the envelope from its From and To/Cc/Bcc (or ``recipients``), Bcc not in it."""
    sender, rcpts = envelope(message, None, recipients)
    try:
        return await transport.send(sender, rcpts, flatten(message, utf8=not (sender + "".join(rcpts)).isascii()))
    finally:
        await transport.close()

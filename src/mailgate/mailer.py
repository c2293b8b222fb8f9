"""Sending with the configured Email server: one place that pairs its settings with the OAuth token source.

The outbox worker (through :meth:`Mailer.transport`), the CLI ``send`` command and the server test all go
through here.
"""

from __future__ import annotations

from email.message import EmailMessage

from .configure import ConfigService
from .errors import ConfigurationError
from .oauth import TokenManager
from .smtp import SmtpConnection, Step, TokenSource, test_connection
from .store.repository import DEFAULT_ACCOUNT
from .transport import SendResult, Transport
from .types import Authentication, EmailServerConfig

__all__ = ["Mailer"]


class Mailer:
    """Builds the transport of the configured Email server, and sends or tests with it."""

    def __init__(self, config: ConfigService, tokens: TokenManager) -> None:
        self._config = config
        self._tokens = tokens

    async def server(self, account: str = DEFAULT_ACCOUNT) -> EmailServerConfig:
        """The account's Email server, or ConfigurationError when it has none."""
        server = await self._config.email_server(account)
        if not server.host:
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
        return SmtpConnection(server, self.token_source(server, account))

    async def connection(self, account: str = DEFAULT_ACCOUNT) -> SmtpConnection:
        """A connection to the account's server, not yet opened (``async with`` opens and closes it)."""
        server = await self.server(account)
        return SmtpConnection(server, self.token_source(server, account))

    async def send(self, message: EmailMessage, account: str = DEFAULT_ACCOUNT) -> SendResult:
        async with await self.connection(account) as conn:
            return await conn.send_message(message)

    async def test(self, *, send_to: str | None = None, account: str = DEFAULT_ACCOUNT) -> list[Step]:
        """Connect, TLS, EHLO, AUTH, and with ``send_to`` a short test message: each step's outcome."""
        server = await self.server(account)
        return await test_connection(server, self.token_source(server, account), send_to=send_to)

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
from .transport import SendResult, Transport
from .types import Authentication, EmailServerConfig

__all__ = ["Mailer"]


class Mailer:
    """Builds the transport of the configured Email server, and sends or tests with it."""

    def __init__(self, config: ConfigService, tokens: TokenManager) -> None:
        self._config = config
        self._tokens = tokens

    async def server(self) -> EmailServerConfig:
        server = await self._config.email_server()
        if not server.host:
            raise ConfigurationError(
                "The Email server is not configured.", hint="Fill in and save the Email server page (host, port)."
            )
        return server

    def token_source(self, server: EmailServerConfig) -> TokenSource | None:
        """The OAuth token source when ``server`` authenticates with OAuth, else None."""
        return self._tokens.source() if server.authentication is Authentication.OAUTH else None

    def transport(self, server: EmailServerConfig) -> Transport:
        """The transport for ``server``, not connected yet (the worker's default transport factory)."""
        return SmtpConnection(server, self.token_source(server))

    async def connection(self) -> SmtpConnection:
        """A connection to the configured server, not yet opened (``async with`` opens and closes it)."""
        server = await self.server()
        return SmtpConnection(server, self.token_source(server))

    async def send(self, message: EmailMessage) -> SendResult:
        async with await self.connection() as conn:
            return await conn.send_message(message)

    async def test(self, *, send_to: str | None = None) -> list[Step]:
        """Connect, TLS, EHLO, AUTH, and with ``send_to`` a short test message: each step's outcome."""
        server = await self.server()
        return await test_connection(server, self.token_source(server), send_to=send_to)

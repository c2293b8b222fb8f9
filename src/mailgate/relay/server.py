"""The relay's listeners: STARTTLS on ``MAILGATE_RELAY_PORT``, implicit TLS on ``MAILGATE_RELAY_TLS_PORT``,
both on the running event loop of ``mailgate serve``."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP

from ..config import RelaySettings
from ..errors import ConfigurationError
from .guard import RelayMetrics
from .handler import RelayHandler, SessionRecord, peer_host

__all__ = ["RelaySMTP", "RelayServer"]

log = logging.getLogger("mailgate.relay")


class _QuietDeprecation(logging.Filter):
    """aiosmtpd warns "Session.login_data is deprecated" at every successful AUTH, from its own code."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


class RelaySMTP(SMTP):
    """aiosmtpd's protocol, counting sessions and logging each one when it ends."""

    def __init__(self, handler: RelayHandler, metrics: RelayMetrics, connections: set[RelaySMTP], **kw: Any) -> None:
        super().__init__(handler, **kw)
        self._metrics = metrics
        self._connections = connections
        self.relay_record = SessionRecord(peer="unknown")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # connection_made comes again after STARTTLS, on the TLS transport
        super().connection_made(transport)
        if first:
            self._metrics.sessions += 1
            self._connections.add(self)
            self.relay_record = SessionRecord(peer=peer_host(transport.get_extra_info("peername")))

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        record = self.relay_record
        log.info(
            "relay session %s user=%s queued=%d%s%s",
            record.peer,
            record.user or "-",
            len(record.queued),
            f" [{', '.join(record.queued)}]" if record.queued else "",
            f" failed_logins={record.failed_logins}" if record.failed_logins else "",
        )
        super().connection_lost(error)


@dataclass(frozen=True)
class Listening:
    """Where the relay listens (the ports actually bound: 0 in the settings picks a free one)."""

    host: str
    port: int | None
    tls_port: int | None


class RelayServer:
    """Starts and stops the relay's listeners; ``stop()`` also ends open sessions."""

    def __init__(self, settings: RelaySettings, handler: RelayHandler, metrics: RelayMetrics, context: ssl.SSLContext):
        self._settings = settings
        self._handler = handler
        self._metrics = metrics
        self._context = context
        self._servers: list[asyncio.Server] = []
        self._connections: set[RelaySMTP] = set()

    @property
    def open_sessions(self) -> int:
        """Connections open now."""
        return len(self._connections)

    def _protocol(self, *, implicit_tls: bool) -> RelaySMTP:
        # No STARTTLS requirement when trusted networks may relay without AUTH (devices that cannot do TLS
        # either); AUTH itself always needs TLS, and is not even offered before it (RFC 4954 s4).
        starttls_required = not implicit_tls and not self._settings.trusted_networks
        return RelaySMTP(
            self._handler,
            self._metrics,
            self._connections,
            hostname="mailgate-relay",
            ident="mailgate relay ESMTP",
            tls_context=None if implicit_tls else self._context,
            require_starttls=starttls_required,
            # On the implicit-TLS port the whole connection is TLS, which aiosmtpd does not see as STARTTLS.
            auth_require_tls=not implicit_tls,
            auth_required=False,  # the handler answers 530 at MAIL (trusted networks need no AUTH)
            enable_SMTPUTF8=True,
            decode_data=False,
            data_size_limit=1,  # replaced at EHLO by the outbox's limit (RelayHandler.handle_EHLO)
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> Listening:
        logging.getLogger("mail.log").addFilter(_QuietDeprecation())
        # aiosmtpd logs every command at INFO; the relay logs one line per session instead.
        if logging.getLogger("mail.log").level == logging.NOTSET:
            logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        host = self._settings.host
        ports: list[int | None] = [None, None]
        try:
            if self._settings.port is not None:
                server = await loop.create_server(lambda: self._protocol(implicit_tls=False), host, self._settings.port)
                self._servers.append(server)
                ports[0] = int(server.sockets[0].getsockname()[1])
            if self._settings.tls_port is not None:
                server = await loop.create_server(
                    lambda: self._protocol(implicit_tls=True), host, self._settings.tls_port, ssl=self._context
                )
                self._servers.append(server)
                ports[1] = int(server.sockets[0].getsockname()[1])
        except OSError as exc:
            await self.stop()
            raise ConfigurationError(
                f"The SMTP relay cannot listen on {host} (port {self._settings.port} / TLS port "
                f"{self._settings.tls_port}): {exc.strerror or exc}",
                hint="Choose a free port (MAILGATE_RELAY_PORT, --relay-port, MAILGATE_RELAY_TLS_PORT) and an address "
                "of this machine (MAILGATE_RELAY_HOST); ports under 1024 need privileges.",
            ) from exc
        except BaseException:
            await self.stop()
            raise
        return Listening(host, ports[0], ports[1])

    async def stop(self) -> None:
        """Stop listening and end the open sessions (a message not yet answered 250 is not queued)."""
        for server in self._servers:
            server.close()
        for protocol in list(self._connections):
            if protocol.transport is not None:
                protocol.transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

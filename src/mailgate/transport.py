"""The one interface the outbox worker sends through: SMTP, Microsoft Graph or the Gmail API.

Core (no I/O, imports nothing above it): the worker knows only :class:`Transport` and a
:data:`TransportFactory`, so transports are interchangeable per account.  Connection reuse, reconnecting
and token refreshes stay inside each transport.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .types import EmailServerConfig

__all__ = ["SendResult", "Step", "TokenSource", "Transport", "TransportFactory"]


@dataclass(frozen=True)
class Step:
    """One stage of setting up or testing a transport (connect, tls, ehlo, auth, token, permission, send)."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


class TokenSource(Protocol):
    """Where a transport gets OAuth access tokens (``mailgate.oauth.AccountTokenSource`` is one)."""

    async def access_token(self, *, force_refresh: bool = False) -> str:
        """A valid access token; with ``force_refresh`` a new one, because the server rejected the last."""
        ...


@dataclass(frozen=True)
class SendResult:
    """What the server said about one message: accepted and refused recipients, and its final reply."""

    accepted: tuple[str, ...]
    #: Refused recipients with the server's (code, text); only when some others were accepted.
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: The server's reply to the message (SMTP: to its DATA), often with its queue id.
    reply: str = ""


class Transport(Protocol):
    """Sends stored messages for one account, one at a time, keeping its connection between messages.

    Failures are typed (:mod:`mailgate.errors`); whether one is worth retrying is its class:

    - :class:`~mailgate.errors.TransientDeliveryError`: the same message may go later (4xx, a dropped
      connection, a timeout);
    - :class:`~mailgate.errors.PermanentDeliveryError`: the message (or, from :meth:`connect`, the account's
      configuration) will not work as it is; a refused sender or content fails the message;
    - :class:`~mailgate.errors.CredentialsRejectedError`: the credentials were refused, even after one forced
      token refresh: an administrator must act;
    - :class:`~mailgate.errors.OAuthError` from the token source, :class:`~mailgate.errors.ConfigurationError`
      for settings that cannot work, :class:`~mailgate.errors.ValidationError` for an unusable envelope.

    Secrets never appear in a repr, a log line or an error message.
    """

    @property
    def is_connected(self) -> bool:
        """Whether the transport is ready to send without setting anything up first (as far as it knows)."""
        ...

    async def connect(self) -> None:
        """Set up (connect, secure, authenticate); a no-op when already connected.

        A failure here is the account's, not a message's: the worker holds or retries the account's messages.
        """
        ...

    async def send(
        self,
        envelope_from: str,
        recipients: Sequence[str],
        message: bytes,
        *,
        ready: Awaitable[object] | None = None,
    ) -> SendResult:
        """Hand over ``message`` (a serialised RFC 5322 message, CRLF line ends) for ``recipients``.

        Connects first when needed.  Returns once the server has taken responsibility for the message for at
        least one recipient; raises when the sender, the message or every recipient is refused.  A recipient
        refused while others are accepted is in :attr:`SendResult.refused`.

        ``ready`` (a task or future) is awaited before the message itself is handed over (SMTP: before DATA,
        once the recipients are accepted): the outbox commits the previous message's result meanwhile.  If it
        raises, nothing of this message was handed over, and its exception propagates.
        """
        ...

    async def close(self) -> None:
        """Release the connection (politely when it can); the transport may connect again later."""
        ...


#: Builds the transport of an account from its server settings and its name (not connected yet).
TransportFactory = Callable[[EmailServerConfig, str], Transport]

"""The common part of the HTTP send transports (Microsoft Graph, the Gmail API): a bearer token from the
account's token source, one forced refresh on a 401, and HTTP answers mapped to mailgate's typed errors.

Owns httpx for sending: every httpx exception is converted here.  Each API (``graph/``, ``gmail/``) says how to
build its request, read its error bodies, and what to grant when a permission is missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from ..errors import (
    ConfigurationError,
    CredentialsRejectedError,
    DeliveryError,
    MailgateError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from ..transport import SendResult, Step, TokenSource
from ..types import EmailServerConfig
from .envelope import with_envelope_recipients

__all__ = ["ApiError", "HttpTransport", "json_body", "retry_after_seconds"]

log = logging.getLogger(__name__)

#: Statuses that mean "later": throttling (429) and a service that is down for now (RFC 9110 s.15.6).
_LATER = frozenset({408, 429, 500, 502, 503, 504})


class ApiError:
    """What an API said in an error answer: its code (``ErrorAccessDenied``, ``rateLimitExceeded``) and text."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message

    def __str__(self) -> str:
        text = f"HTTP {self.status}" + (f" {self.code}" if self.code else "")
        return f"{text}: {self.message.rstrip('.')}" if self.message else text


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The ``Retry-After`` header (RFC 9110 s.10.2.3) in seconds: delay-seconds or an HTTP-date; None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpTransport:
    """A :class:`mailgate.transport.Transport` over an HTTP send API, for one account.

    ``client`` is the account's ``httpx.AsyncClient``, shared by its transports and kept open by its owner
    (the :class:`~mailgate.mailer.Mailer`); closing a transport forgets its state, not the client.
    ``base_url`` gives the API's base URL (the provider catalogue's ``graph_url`` / ``gmail_url``), read when
    connecting, so that a catalogue or provider change applies without rebuilding the transport.
    """

    #: The API's name in messages ("Microsoft Graph").
    api: ClassVar[str] = ""
    #: The largest message the API takes, in bytes of the request body, and how the limit is worded.
    max_bytes: ClassVar[int] = 0
    limit_text: ClassVar[str] = ""
    #: What to grant when the API answers 403 for a missing permission.
    grant_hint: ClassVar[str] = ""

    def __init__(
        self,
        config: EmailServerConfig,
        token_source: TokenSource,
        client: httpx.AsyncClient,
        base_url: Callable[[], Awaitable[str]],
    ) -> None:
        self.config = config
        self._tokens = token_source
        self._client = client
        self._resolve = base_url
        self.base_url = ""
        self._connected = False

    def __repr__(self) -> str:
        state = "connected" if self._connected else "closed"
        return f"<{type(self).__name__} {self.base_url} as {self.config.username!r} {state}>"

    # -- what each API provides ------------------------------------------------------------------------

    def send_request(self, token: str, message: bytes) -> httpx.Request:
        """The request that sends ``message`` (Bcc header already added)."""
        raise NotImplementedError

    def body_size(self, message: bytes) -> int:
        """The size the API's limit applies to."""
        return len(message)

    def probe_request(self, token: str) -> httpx.Request:
        """A request that needs the send permission and sends nothing (see :meth:`probe`)."""
        raise NotImplementedError

    def parse_error(self, response: httpx.Response) -> ApiError:
        """The API's error code and message from an error answer."""
        raise NotImplementedError

    def permission_error(self, error: ApiError) -> MailgateError:
        """A 403 that is not throttling: by default the credentials lack the send permission."""
        return CredentialsRejectedError(
            f"{self.api} refused to send for {self.mailbox}: {error}.", hint=self.grant_hint,
            reply_code=error.status, reply=error.message,
        )  # fmt: skip

    def throttled(self, error: ApiError) -> bool:
        """Whether a 403 is in fact a rate limit (Gmail answers some with 403)."""
        return False

    @property
    def mailbox(self) -> str:
        return self.config.username or "the signed-in mailbox"

    # -- Transport ---------------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        """Get an access token: a consent or token endpoint problem is the account's, not a message's."""
        self.base_url = (await self._resolve()).rstrip("/")
        await self._tokens.access_token()
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    async def send(
        self, envelope_from: str, recipients: Sequence[str], message: bytes, *, ready: Awaitable[object] | None = None
    ) -> SendResult:
        """POST ``message`` for ``recipients`` (those not in its headers go in a Bcc header the API removes).

        One result for the whole message: these APIs give no per-recipient answer.
        """
        outgoing = with_envelope_recipients(message, recipients, self.api)
        size = self.body_size(outgoing)
        if self.max_bytes and size > self.max_bytes:
            raise PermanentDeliveryError(
                f"The message is {size / 1_048_576:.1f} MB as {self.api} takes it; {self.limit_text}.",
                hint="Send it over SMTP (Email server page, Delivery: SMTP; up to 35 MB at Microsoft and Google) "
                "or make it smaller (link large files instead of attaching them).",
            )
        if not self._connected:
            await self.connect()
        if ready is not None:
            await ready
        response = await self._exchange(lambda token: self.send_request(token, outgoing))
        return SendResult(accepted=tuple(dict.fromkeys(recipients)), reply=_reply_text(response))

    async def probe(self) -> list[Step]:
        """Check without sending: an access token, then a request the API refuses only for a bad token or a
        missing permission (an empty message it cannot send).  For Test connection and ``mailgate doctor``."""
        steps: list[Step] = []
        try:
            await self.connect()
        except MailgateError as exc:
            return [Step("token", False, exc.message, exc.hint)]
        steps.append(Step("token", True, f"an access token for {self.api} (the account's OAuth consent)"))
        try:
            response = await self._exchange(self.probe_request, probing=True)
        except MailgateError as exc:
            steps.append(Step("permission", False, exc.message, exc.hint))
            return steps
        detail = f"{self.api} accepted the token and the send permission for {self.mailbox}"
        steps.append(Step("permission", True, f"{detail} (HTTP {response.status_code}; nothing was sent)"))
        return steps

    async def _exchange(self, build: Callable[[str], httpx.Request], *, probing: bool = False) -> httpx.Response:
        response = await self._request(build(await self._tokens.access_token()))
        if response.status_code == 401:
            # The token may be expired or revoked early: one new token, one more try (DESIGN.md, smtp/).
            log.info("%s refused the access token (401); retrying once with a fresh token", self.api)
            response = await self._request(build(await self._tokens.access_token(force_refresh=True)))
            if response.status_code == 401:
                self._connected = False
                error = self.parse_error(response)
                raise CredentialsRejectedError(
                    f"{self.api} refused the access token even after a refresh: {error}.",
                    hint="Authorize again on the Email server page (the consent may be revoked, or given "
                    "for another API: the token's audience must be " + self.api + ").",
                    reply_code=401, reply=error.message,
                )  # fmt: skip
        if response.is_success or (probing and response.status_code == 400):
            return response
        raise self._error(response)

    async def _request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._client.send(request)
        except httpx.TimeoutException as exc:
            self._connected = False
            raise TransientDeliveryError(
                f"{self.api} did not answer within {self.config.timeout:g} s.",
                hint="mailgate will try again; check the network path (proxy, firewall) to the API.",
            ) from exc
        except httpx.HTTPError as exc:  # connection refused, DNS, TLS, a dropped connection
            self._connected = False
            raise TransientDeliveryError(
                f"{self.api} cannot be reached at {self.base_url} ({type(exc).__name__}: {exc}).",
                hint="mailgate will try again; check DNS, proxy and firewall rules towards the API.",
            ) from exc

    def _error(self, response: httpx.Response) -> DeliveryError | MailgateError:
        error = self.parse_error(response)
        status = response.status_code
        if status in _LATER or (status == 403 and self.throttled(error)):
            wait = retry_after_seconds(response.headers.get("retry-after"))
            after = f" (Retry-After: {wait:g} s)" if wait is not None else ""
            return TransientDeliveryError(
                f"{self.api} asked to try later: {error}{after}.",
                hint="mailgate will try again, not before the time the API asked for.",
                reply_code=status, reply=error.message, retry_after=wait,
            )  # fmt: skip
        if status == 403:
            return self.permission_error(error)
        if status == 404:
            return ConfigurationError(
                f"{self.api} does not know the mailbox {self.mailbox}: {error}.",
                hint="Set Username on the Email server page to the mailbox's address (its user principal name).",
            )
        if status == 413:
            return PermanentDeliveryError(
                f"{self.api} refused the message as too large: {error}; {self.limit_text}.",
                hint="Send it over SMTP or make it smaller.", reply_code=status, reply=error.message,
            )  # fmt: skip
        return PermanentDeliveryError(
            f"{self.api} refused the message: {error}.",
            hint="The message will not be accepted as it is; check its headers and addresses.",
            reply_code=status, reply=error.message,
        )  # fmt: skip


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of an answer, or {} when it is not one."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _reply_text(response: httpx.Response) -> str:
    data = json_body(response)
    ident = data.get("id") or response.headers.get("request-id") or ""
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f" id={ident}" if ident else "")

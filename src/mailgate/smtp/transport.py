"""The SMTP transport: one submission connection (TLS, EHLO, AUTH with XOAUTH2, OAUTHBEARER, PLAIN or LOGIN),
reused for many messages; it implements :class:`mailgate.transport.Transport`.

Built on aiosmtplib's public API; every aiosmtplib, socket and ssl exception is converted by :mod:`.replies`
here.  Secrets (access tokens, passwords) never appear in a repr, a log line, a step or an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import logging
import ssl
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Self, cast

import aiosmtplib

from ..errors import ConfigurationError, MailgateError, SmtpError, SmtpPermanentError, ValidationError
from ..transport import SendResult, Step, TokenSource
from ..types import Authentication, EmailServerConfig, Security
from .auth import (
    OAUTHBEARER_ERROR_RESPONSE,
    XOAUTH2_ERROR_RESPONSE,
    SaslReply,
    initial_response_fits,
    oauthbearer_initial_response,
    parse_error_challenge,
    xoauth2_initial_response,
)
from .replies import CLIENT_ERRORS, error_from_exception, error_from_reply, one_line
from .tls import describe_tls, load_client_context
from .transaction import Broken, envelope, flatten, run_transaction

__all__ = ["SendResult", "SmtpConnection", "Step", "TokenSource"]

log = logging.getLogger(__name__)


class SmtpConnection:
    """An SMTP submission connection, reusable for many messages (``async with`` connects and closes).

    A :class:`mailgate.transport.Transport`: :meth:`send` reconnects when the server closed the connection.

    ``ssl_context`` replaces the verified default context (tests); it must verify certificates.
    """

    def __init__(
        self,
        config: EmailServerConfig,
        token_source: TokenSource | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if ssl_context is not None and (ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname):
            raise ValueError("ssl_context must verify the server's certificate and host name")
        if config.authentication is Authentication.OAUTH and token_source is None:
            raise ConfigurationError("OAuth authentication needs a token source.", hint="Authorize on the OAuth page.")
        if config.authentication is not Authentication.NONE and not config.username:
            raise ConfigurationError("Username is empty.", hint="Set Username to the mailbox to send from.")
        self.config = config
        self._token_source = token_source
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self._smtp: aiosmtplib.SMTP | None = None
        self._transport: asyncio.BaseTransport | None = None  # the outermost (TLS) transport, see _drop
        self._lock = asyncio.Lock()
        self._steps: list[Step] = []
        #: The SASL mechanism of the last successful AUTH, or "" (none yet / no authentication).
        self.mechanism = ""

    def __repr__(self) -> str:
        c = self.config
        state = "connected" if self.is_connected else "closed"
        return f"<SmtpConnection {c.host}:{c.port} {c.security} {c.authentication} as {c.username!r} {state}>"

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def is_connected(self) -> bool:
        """Whether the connection is open (as far as the client knows) and ready to send."""
        return self._smtp is not None and self._smtp.is_connected

    @property
    def steps(self) -> tuple[Step, ...]:
        """The stages of the last :meth:`connect`, with the server's replies, for diagnostics."""
        return tuple(self._steps)

    # -- setting up ------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, secure, EHLO and authenticate; no-op when already connected.

        Raises SmtpError subclasses, or the token source's OAuthError; :attr:`steps` says how far it got.
        """
        async with self._lock:
            if not self.is_connected:
                await self._connect()

    async def _connect(self) -> None:
        await self._drop(polite=False)  # a connection the server or a failure closed
        self._steps.clear()
        self.mechanism = ""
        try:
            await self._open()
            await self._authenticate()
        except Exception:
            await self._drop(polite=True)
            raise
        except BaseException:  # cancelled: close without awaiting anything more
            self._abort()
            raise

    def _record(self, name: str, detail: str) -> None:
        self._steps.append(Step(name, True, detail))

    def _fail(self, name: str, exc: BaseException, during: str | None = None) -> SmtpError:
        err = error_from_exception(exc, during or name, host=self.config.host, port=self.config.port)
        self._steps.append(Step(name, False, err.message, err.hint))
        return err

    async def _tls_context(self) -> ssl.SSLContext:
        try:
            self._ssl_context = self._ssl_context or await load_client_context(self.config.ca_file)
        except SmtpPermanentError as err:
            self._steps.append(Step("tls", False, err.message, err.hint))
            raise
        return self._ssl_context

    async def _open(self) -> None:
        c = self.config
        implicit = c.security is Security.SSL
        context = await self._tls_context() if c.security is not Security.NONE else None
        smtp = aiosmtplib.SMTP(
            hostname=c.host, port=c.port, timeout=c.timeout, use_tls=implicit, start_tls=False, tls_context=context,
            local_hostname=self._local_hostname,
        )  # fmt: skip
        try:
            banner = await smtp.connect()
        except CLIENT_ERRORS as exc:
            if implicit and isinstance(error_from_exception(exc, "tls"), SmtpPermanentError):
                self._record("connect", f"TCP connection to {c.host}:{c.port} established")
                raise self._fail("tls", exc) from exc
            raise self._fail("connect", exc) from exc
        self._smtp, self._transport = smtp, smtp.transport
        self._record("connect", f"{c.host}:{c.port} answered: {banner.code} {one_line(banner.message)}")
        if implicit:
            self._record("tls", describe_tls(smtp))
        await self._ehlo(smtp)
        if c.security is Security.STARTTLS:
            await self._starttls(smtp, context)
            await self._ehlo(smtp)

    async def _ehlo(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            reply = await smtp.ehlo()
        except CLIENT_ERRORS as exc:
            raise self._fail("ehlo", exc) from exc
        lines = [line.strip() for line in reply.message.splitlines()[1:] if line.strip()]
        secured = smtp.get_transport_info("sslcontext") is not None
        self._record("ehlo", f"server offers{'' if secured else ' (before TLS)'}: {', '.join(lines) or 'nothing'}")

    async def _starttls(self, smtp: aiosmtplib.SMTP, context: ssl.SSLContext | None) -> None:
        if not smtp.supports_extension("starttls"):
            # RFC 3207 s4 / RFC 8314 s3.1: never fall back to plain text, and send no credentials.
            err = SmtpPermanentError(
                f"{self.config.host}:{self.config.port} does not offer STARTTLS; nothing was sent in clear.",
                hint=(
                    "The server, or a firewall/antivirus in between, stripped STARTTLS. Use security ssl on "
                    "port 465, or check the server and the network path (a middlebox may intercept port 587)."
                ),
            )
            self._steps.append(Step("tls", False, err.message, err.hint))
            raise err
        try:
            await smtp.starttls(tls_context=context)
        except CLIENT_ERRORS as exc:
            raise self._fail("tls", exc) from exc
        self._transport = smtp.transport
        self._record("tls", describe_tls(smtp))

    # -- authentication --------------------------------------------------------------------------------

    async def _authenticate(self) -> None:
        c = self.config
        if c.authentication is Authentication.NONE:
            self._record("auth", "no authentication configured")
            return
        smtp = self._require()
        offered = [m.upper() for m in smtp.server_auth_methods]
        if c.authentication is Authentication.PASSWORD:
            mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), "")
        else:
            mechanism = next((m for m in ("XOAUTH2", "OAUTHBEARER") if m in offered), "")
        if not mechanism:
            wanted = "PLAIN or LOGIN" if c.authentication is Authentication.PASSWORD else "XOAUTH2 or OAUTHBEARER"
            err = SmtpPermanentError(
                f"The server offers AUTH {' '.join(offered) or '(none)'}, not {wanted}.",
                hint=(
                    "Check host and port (submission is 587 or 465; port 25 often offers no AUTH) and the "
                    "Authentication setting; some servers offer AUTH only after TLS."
                ),
            )
            self._steps.append(Step("auth", False, err.message, err.hint))
            raise err
        try:
            if c.authentication is Authentication.PASSWORD:
                reply = await self._auth_password(smtp, mechanism)
            else:
                reply = await self._auth_oauth(mechanism)
        except MailgateError:
            raise
        except CLIENT_ERRORS as exc:
            raise self._fail("auth", exc) from exc
        self.mechanism = mechanism
        self._record("auth", f"{mechanism} as {c.username}: {reply}")

    async def _auth_password(self, smtp: aiosmtplib.SMTP, mechanism: str) -> str:
        c = self.config
        try:
            if mechanism == "PLAIN":
                reply = await smtp.auth_plain(c.username, c.password)
            else:
                reply = await smtp.auth_login(c.username, c.password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise self._fail("auth", exc) from exc
        return f"{reply.code} {one_line(reply.message)}"

    async def _token(self, *, force_refresh: bool) -> str:
        assert self._token_source is not None  # checked in __init__
        try:
            return await self._token_source.access_token(force_refresh=force_refresh)
        except MailgateError as exc:
            self._steps.append(Step("auth", False, exc.message, exc.hint))
            raise

    async def _sasl(self, smtp: aiosmtplib.SMTP, mechanism: str, token: str) -> SaslReply:
        c = self.config
        try:
            if mechanism == "XOAUTH2":
                initial, abort = xoauth2_initial_response(c.username, token), XOAUTH2_ERROR_RESPONSE
            else:
                initial = oauthbearer_initial_response(c.username, c.host, c.port, token)
                abort = OAUTHBEARER_ERROR_RESPONSE
        except ValueError as exc:  # the message names the field, never the token
            err = ConfigurationError(
                str(exc), hint="Username must be a plain mailbox address; re-authorize if the token is malformed."
            )
            self._steps.append(Step("auth", False, err.message, err.hint))
            raise err from exc
        if initial_response_fits(mechanism, initial):
            reply = await smtp.execute_command(b"AUTH", mechanism.encode(), initial.encode("ascii"))
        else:
            # RFC 4954 s4: too long for the AUTH line.  XOAUTH2 and OAUTHBEARER are client-first, so the
            # server's first challenge is empty ("334 "); the response goes on a line of its own.
            reply = await smtp.execute_command(b"AUTH", mechanism.encode())
            if reply.code != 334:
                return SaslReply(reply.code, reply.message)
            reply = await smtp.execute_command(initial.encode("ascii"))
        if reply.code != 334:
            return SaslReply(reply.code, reply.message)
        # An error challenge: the client MUST answer (empty line for XOAUTH2, %x01 for OAUTHBEARER,
        # RFC 7628 s3.2.3) before the server sends its final reply.
        challenge = parse_error_challenge(reply.message)
        final = await smtp.execute_command(abort.encode("ascii"))
        return SaslReply(final.code, final.message, challenge)

    async def _auth_oauth(self, mechanism: str) -> str:
        reply = await self._sasl(self._require(), mechanism, await self._token(force_refresh=False))
        if reply.code == 235:
            return f"{reply.code} {one_line(reply.message)}"
        if reply.token_rejected:
            # The cached token may be expired or revoked early: get a new one and try once more
            # (DESIGN.md, smtp/).  Same connection when the server kept it open, else a new one.
            log.info("SMTP server rejected the access token (%s); retrying once with a fresh token", reply.code)
            token = await self._token(force_refresh=True)
            try:
                if not self.is_connected:
                    raise aiosmtplib.SMTPServerDisconnected("closed after the rejection")
                reply = await self._sasl(self._require(), mechanism, token)
            except aiosmtplib.SMTPServerDisconnected:
                await self._drop(polite=False)
                await self._open()
                reply = await self._sasl(self._require(), mechanism, token)
            if reply.code == 235:
                return f"{reply.code} {one_line(reply.message)} (after refreshing the access token)"
        err = error_from_reply(reply.code, reply.message, during="auth")
        if reply.challenge:
            details = ", ".join(f"{k}={v}" for k, v in sorted(reply.challenge.items()))
            message = f"{err.message} (error challenge: {details})"
            err = type(err)(message, cause=err.cause, hint=err.hint, reply_code=err.reply_code, reply=err.reply)
        self._steps.append(Step("auth", False, err.message, err.hint))
        raise err

    # -- sending ---------------------------------------------------------------------------------------

    async def send(
        self, envelope_from: str, recipients: Sequence[str], message: bytes, *, ready: Awaitable[object] | None = None
    ) -> SendResult:
        """Send ``message`` (serialised, CRLF line ends, e.g. as the outbox stores it); connects first if needed.

        Raises the mapped SmtpError when the sender, the message or every recipient is refused (a partial refusal
        is in :attr:`SendResult.refused`), ValidationError for an unusable envelope.  ``ready`` (a task or future)
        is awaited before DATA; if it raises, the connection is closed (nothing was handed over) and it propagates.
        """
        sender, rcpts = envelope(message, envelope_from, recipients)
        async with self._lock:
            if not (reused := self.is_connected):
                await self._connect()
            try:
                return await self._transaction(sender, rcpts, message, ready)
            except Broken as broken:
                if not (reused and broken.before_any_reply):
                    raise broken.error from broken.__cause__
                # RFC 5321 s4.5.3.2.7: servers close idle connections.  Nothing of this message reached the
                # server, so starting over on a new connection is safe.
                log.info("%s:%s closed the idle connection; connecting again", self.config.host, self.config.port)
                await self._connect()
                try:
                    return await self._transaction(sender, rcpts, message, ready)
                except Broken as again:
                    raise again.error from again.__cause__

    async def send_message(
        self, message: email.message.EmailMessage, *, recipients: Sequence[str] | None = None
    ) -> SendResult:
        """Send an EmailMessage: the envelope from its From and To/Cc/Bcc (or ``recipients``), Bcc not sent."""
        sender, rcpts = envelope(message, None, recipients)
        return await self.send(sender, rcpts, flatten(message, utf8=not (sender + "".join(rcpts)).isascii()))

    async def _transaction(
        self, sender: str, rcpts: list[str], message: bytes, ready: Awaitable[object] | None = None
    ) -> SendResult:
        c = self.config
        try:
            return await run_transaction(self._require(), sender, rcpts, message, host=c.host, port=c.port, ready=ready)
        except (SmtpError, ValidationError):
            raise  # a refusal: the transaction was reset, the connection carries on
        except BaseException:
            # Broken, cancelled, ``ready`` failed, or a bug: the replies still to come would be taken for the
            # next message's, or its commands for this one's content.  Only closing is safe.
            self._abort()
            raise

    def _require(self) -> aiosmtplib.SMTP:
        if self._smtp is None:
            raise aiosmtplib.SMTPServerDisconnected("not connected")
        return self._smtp

    # -- closing ---------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Say QUIT (ignoring any failure) and close the connection."""
        async with self._lock:
            await self._drop(polite=True)

    def _abort(self) -> None:
        """Close at once, without QUIT (the server discards an unfinished transaction, RFC 5321 s3.8)."""
        smtp, self._smtp = self._smtp, None
        transport, self._transport = self._transport, None
        if smtp is not None:
            smtp.close()
        if transport is not None:  # a stream transport (uvloop's do not subclass asyncio.Transport)
            cast(asyncio.Transport, transport).abort()

    async def _drop(self, *, polite: bool) -> None:
        smtp, transport = self._smtp, self._transport
        if smtp is None:
            return
        if polite and smtp.is_connected:
            with contextlib.suppress(*CLIENT_ERRORS):
                await smtp.quit(timeout=min(self.config.timeout, 5.0))
        # After QUIT (or a failure) nothing more is expected: release the socket now.  aiosmtplib's close()
        # starts a TLS close_notify exchange and forgets the transport, which leaves the socket open until
        # the peer answers, or for good if the event loop stops first.
        self._abort()
        if polite and transport is not None:
            await asyncio.sleep(0)  # runs the callback abort() scheduled, which closes the socket

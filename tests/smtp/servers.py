"""Real SMTP servers for tests: aiosmtpd with XOAUTH2 / OAUTHBEARER that can imitate Gmail and Microsoft.

Reusable by any test package (relay, outbox, web): no pytest in here.  Typical use::

    handler = Mailbox(tokens={"good"})
    with running_server(handler, tls="starttls", server_context=server_ssl_context) as server:
        config = server.config(authentication=Authentication.OAUTH)
        ...
    handler.messages, handler.sasl_commands, handler.sasl_attempts  # what the server saw

Failure imitations (``Mailbox(failure=...)``), from PROVIDERS.md:
- ``"gmail"``: a ``334`` base64 JSON error challenge, then (after the client's answer)
  ``535 5.7.8 Username and Password not accepted``;
- ``"microsoft"``: ``535 5.7.3 Authentication unsuccessful``;
- any other string: that reply as is (e.g. ``MS_AUTH_DISABLED``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import json
import ssl
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from mailgate.sandbox.smtp_server import offer_pipelining
from mailgate.types import Authentication, EmailServerConfig, Security

__all__ = [
    "GMAIL_BAD_CREDENTIALS",
    "MS_AUTH_DISABLED",
    "MS_TOKEN_REJECTED",
    "AuthAttempt",
    "FakeTokenSource",
    "Mailbox",
    "OAuthSMTP",
    "Received",
    "RunningServer",
    "ServerController",
    "running_server",
]

GMAIL_BAD_CREDENTIALS = (
    "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials x1-20020a05.123 - gsmtp"
)
MS_TOKEN_REJECTED = "535 5.7.3 Authentication unsuccessful [SN4PR0501CA0046.namprd05.prod.outlook.com]"
MS_AUTH_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
    "Visit https://aka.ms/smtp_auth_disabled for more information."
)
GMAIL_ERROR_CHALLENGE = {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}

# RFC 4954 s4: a SASL response line after a 334 may be much longer than a command (servers accept at least
# 12,288 octets); aiosmtpd's 1001-octet line default would refuse the > 2 KB tokens of Entra there.
RESPONSE_LINE_LIMIT = 12288


class OAuthSMTP(SMTP):
    """aiosmtpd's SMTP with a standard submission server's limits, recording every AUTH command it receives.

    Like Dovecot or Postfix, an AUTH command line is at most 512 octets (aiosmtpd's default
    ``command_size_limit``): a client must send a long initial response after the server's ``334``
    (RFC 4954 s4), where lines up to :data:`RESPONSE_LINE_LIMIT` octets are read.
    """

    line_length_limit = RESPONSE_LINE_LIMIT

    def __init__(self, handler: Mailbox, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        # aiosmtpd keeps command_size_limits on the class (and clears it in __init__): use one per server.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        # Recorded before any check, so a test can assert that no AUTH reached the server at all.
        words = arg.split() if arg else []
        self.event_handler.sasl_commands.append(words[0].upper() if words else "")
        self.event_handler.sasl_inline.append(len(words) > 1)
        await super().smtp_AUTH(arg)


@dataclass(frozen=True)
class AuthAttempt:
    """One SASL exchange as the server understood it (tokens are test values, so they are kept)."""

    mechanism: str
    user: str
    token: str
    host: str = ""
    port: str = ""


@dataclass(frozen=True)
class Received:
    """A message the server accepted."""

    peer: Any
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    authenticated_as: str | None


def _parse_kv(blob: bytes) -> dict[str, str]:
    # RFC 7628 s3.1 / XOAUTH2: \x01-separated key=value pairs, ending with \x01\x01.
    pairs = blob.decode("utf-8", "replace").split("\x01")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


@dataclass
class Mailbox:
    """aiosmtpd handler: OAuth and password AUTH, recipient policy, failure injection, and a record.

    aiosmtpd offers every ``auth_*`` attribute of a handler as a mechanism: no other names start so.
    """

    user: str = "user@example.com"
    tokens: Collection[str] = ("good-token",)
    password: str = "app-password"
    failure: str = "gmail"
    #: Close the connection after a failed AUTH (some servers do; exercises the client's reconnect).
    close_after_auth_failure: bool = False
    #: Recipients to refuse, with the reply to give.
    refuse: Mapping[str, str] = field(default_factory=dict)
    #: Reply to the end of DATA instead of accepting the message (e.g. "451 4.3.0 Try again later").
    data_reply: str | None = None
    #: "MAIL" or "DATA": drop the connection without a reply when that command arrives...
    disconnect_at: str | None = None
    #: ...only at these occurrences of it (1-based, counted over all connections); None: every time.
    disconnect_on: Collection[int] | None = None

    sasl_commands: list[str] = field(default_factory=list)
    #: For each AUTH command: whether the initial response came on the AUTH line (else after a 334).
    sasl_inline: list[bool] = field(default_factory=list)
    sasl_attempts: list[AuthAttempt] = field(default_factory=list)
    #: What clients answered to error challenges (decoded): b"" for XOAUTH2, b"\x01" for OAUTHBEARER.
    challenge_answers: list[bytes] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    # -- AUTH ----------------------------------------------------------------------------------------

    async def _initial(self, server: SMTP, args: list[str]) -> bytes | None:
        if len(args) > 1:
            try:
                return base64.b64decode(args[1], validate=True)
            except binascii.Error:
                return None
        answer = await server.challenge_auth("")
        return answer if isinstance(answer, bytes) else None

    async def _reject(self, server: SMTP, challenge: dict[str, str] | None) -> AuthResult:
        if self.failure == "gmail" and challenge is not None:
            answer = await server.challenge_auth(json.dumps(challenge).encode(), encode_to_b64=True)
            if not isinstance(answer, bytes):  # the client sent "*" or garbage: aiosmtpd already replied
                return AuthResult(success=False, handled=True)
            self.challenge_answers.append(answer)
        reply = {"gmail": GMAIL_BAD_CREDENTIALS, "microsoft": MS_TOKEN_REJECTED}.get(self.failure, self.failure)
        if self.close_after_auth_failure:
            await server.push(reply)
            assert server.transport is not None
            server.transport.close()
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=reply)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = await self._initial(server, args)
        if blob is None:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode response")
        fields = _parse_kv(blob)
        token = fields.get("auth", "").removeprefix("Bearer ")
        self.sasl_attempts.append(AuthAttempt("XOAUTH2", fields.get("user", ""), token))
        if fields.get("user") == self.user and token in self.tokens:
            return AuthResult(success=True, auth_data=self.user, message="235 2.7.0 Accepted")
        return await self._reject(server, GMAIL_ERROR_CHALLENGE)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = await self._initial(server, args)
        if blob is None or not blob.startswith(b"n,"):
            return AuthResult(success=False, handled=False, message="501 5.5.2 Bad GS2 header")
        gs2, _, rest = blob.partition(b"\x01")
        authzid = gs2.decode().split(",")[1].removeprefix("a=").replace("=2C", ",").replace("=3D", "=")
        fields = _parse_kv(rest)
        token = fields.get("auth", "").removeprefix("Bearer ")
        self.sasl_attempts.append(
            AuthAttempt("OAUTHBEARER", authzid, token, fields.get("host", ""), fields.get("port", ""))
        )
        if authzid == self.user and token in self.tokens:
            return AuthResult(success=True, auth_data=self.user)
        # RFC 7628 s3.2.2 error: status/scope/openid-configuration.
        return await self._reject(server, {"status": "invalid_token", "scope": "https://mail.google.com/"})

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        """aiosmtpd ``authenticator`` for the built-in PLAIN and LOGIN."""
        ok = isinstance(data, LoginPassword) and data == (self.user.encode(), self.password.encode())
        return AuthResult(success=ok, handled=False, auth_data=self.user if ok else None)

    # -- mail ----------------------------------------------------------------------------------------

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        # PIPELINING offered as Gmail and Microsoft 365 do (mailgate sends one command at a time anyway).
        return offer_pipelining(session, hostname, responses)

    async def _maybe_drop(self, server: SMTP, command: str) -> None:
        self.counts[command] += 1
        if self.disconnect_at != command:
            return
        if self.disconnect_on is not None and self.counts[command] not in self.disconnect_on:
            return
        await self._drop(server)

    async def _drop(self, server: SMTP) -> None:
        """Drop the connection without a reply."""
        transport = server.transport
        assert isinstance(transport, asyncio.Transport)
        transport.abort()
        # connection_lost() cancels this handler task: wait for it rather than answer on a dead socket.
        await asyncio.Event().wait()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        await self._maybe_drop(server, "MAIL")
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self._maybe_drop(server, "DATA")
        if self.data_reply is not None:
            return self.data_reply
        self.messages.append(
            Received(
                peer=session.peer,
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=bytes(envelope.original_content or b""),
                authenticated_as=session.auth_data if session.authenticated else None,
            )
        )
        return f"250 2.0.0 OK queued as {len(self.messages)}"


class ServerController(Controller):
    """aiosmtpd's threaded Controller serving :class:`OAuthSMTP` on a port the OS chooses (port 0)."""

    def __init__(self, handler: Mailbox, *, hostname: str = "127.0.0.1", **kwargs: Any) -> None:
        super().__init__(handler, hostname=hostname, port=0, **kwargs)

    def factory(self) -> OAuthSMTP:
        return OAuthSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # start() makes a test connection to self.port: point it at the port actually bound.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class RunningServer:
    """A started server: where it listens and what it was told to offer."""

    host: str
    port: int
    security: Security
    handler: Mailbox

    def config(
        self,
        *,
        authentication: Authentication = Authentication.OAUTH,
        security: Security | None = None,
        username: str | None = None,
        password: str = "",
        ca_file: str = "",
        timeout: float = 10.0,
    ) -> EmailServerConfig:
        """An EmailServerConfig pointing at this server (security as served unless given)."""
        user = self.handler.user if username is None else username
        return EmailServerConfig(
            host=self.host,
            port=self.port,
            security=security or self.security,
            username=user,
            sender=user,
            authentication=authentication,
            password=password,
            ca_file=ca_file,
            timeout=timeout,
        )


@contextlib.contextmanager
def running_server(
    handler: Mailbox,
    *,
    tls: Literal["starttls", "ssl", "none"],
    server_context: ssl.SSLContext | None = None,
    mechanisms: Sequence[str] | None = None,
) -> Iterator[RunningServer]:
    """Run a server on 127.0.0.1 for the ``with`` block.

    ``tls``: ``starttls`` offers STARTTLS and AUTH only after it; ``ssl`` is implicit TLS; ``none`` offers
    neither STARTTLS nor TLS but still advertises AUTH in clear (what a STARTTLS-stripping middlebox shows).
    ``mechanisms`` limits the AUTH mechanisms offered (default: XOAUTH2 OAUTHBEARER PLAIN LOGIN).
    """
    all_mechanisms = {"XOAUTH2", "OAUTHBEARER", "PLAIN", "LOGIN"}
    kwargs: dict[str, Any] = {
        "server_hostname": "smtp.test",
        "authenticator": handler.authenticate,
        "auth_exclude_mechanism": sorted(all_mechanisms - set(mechanisms or all_mechanisms)),
    }
    if tls == "starttls":
        assert server_context is not None
        kwargs.update(tls_context=server_context, require_starttls=True, auth_require_tls=True)
    elif tls == "ssl":
        assert server_context is not None
        # aiosmtpd counts only STARTTLS as TLS for auth_require_tls: the socket itself is TLS here.
        kwargs.update(ssl_context=server_context, auth_require_tls=False)
    else:
        kwargs.update(auth_require_tls=False)
    controller = ServerController(handler, **kwargs)
    controller.start()
    try:
        yield RunningServer("127.0.0.1", controller.port, Security(tls), handler)
    finally:
        controller.stop()


class FakeTokenSource:
    """A TokenSource handing out ``tokens`` in order: the first, then the next on each forced refresh."""

    def __init__(self, tokens: Sequence[str] = ("good-token",), *, error: Exception | None = None) -> None:
        self.tokens = list(tokens)
        self.error = error
        self.calls: list[bool] = []  # the force_refresh argument of each call
        self._index = 0

    async def access_token(self, *, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        if self.error is not None:
            raise self.error
        if force_refresh:
            self._index = min(self._index + 1, len(self.tokens) - 1)
        return self.tokens[self._index]

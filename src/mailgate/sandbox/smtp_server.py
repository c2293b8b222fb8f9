"""The sandbox SMTP submission server (aiosmtpd): STARTTLS, then SASL XOAUTH2 / OAUTHBEARER.

It behaves like smtp.office365.com / smtp.gmail.com where mailgate can tell the difference: TLS before
AUTH (RFC 3207, RFC 4954 s.4), long bearer tokens, the failure dialogues of both providers, and Exchange's
refusal to send as anyone but the authenticated mailbox.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hmac
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, Session

from .config import SandboxConfig
from .inbox import Inbox
from .smtp_faults import SmtpFaults
from .state import SandboxState, SmtpAuthCheck

__all__ = ["SmtpIdentity", "SmtpServer"]

#: Entra access tokens are > 2 KB and grow with claims; aiosmtpd's 512-byte AUTH limit rejects them.
_AUTH_LINE_LIMIT = 64 * 1024

_GOOGLE_CHALLENGE = {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}
_FAILED = {
    # shared/PROVIDERS.md, "SASL mechanisms" and Microsoft's SMTP answers.
    "google": "535 5.7.8 Username and Password not accepted",
    "microsoft": "535 5.7.3 Authentication unsuccessful",
}
_ACCEPTED = {"google": "235 2.7.0 Accepted", "microsoft": "235 2.7.0 Authentication successful"}
_SEND_AS_REFUSED = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"


@dataclass(frozen=True)
class SmtpIdentity:
    """What an SMTP session authenticated as (kept in ``session.auth_data``)."""

    account: str
    mechanism: str

    @property
    def login(self) -> str:
        return self.account


class _Session(Session):
    """aiosmtpd's session without the deprecation warning it logs on every successful AUTH."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _SandboxSMTP(SMTP):
    """aiosmtpd's protocol with room for long AUTH lines and a register of open connections."""

    # The StreamReader limit: a line longer than this is refused before any command sees it.
    line_length_limit = _AUTH_LINE_LIMIT

    def __init__(self, handler: SmtpHandler, connections: set[_SandboxSMTP], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        # aiosmtpd keeps command_size_limits at class level and clears it in __init__: use our own.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit, {"AUTH": _AUTH_LINE_LIMIT})
        self._connections = connections

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(error)


def _decode_initial_response(arg: str) -> bytes | None:
    """The initial client response of ``AUTH <mech> <arg>`` (RFC 4954 s.4: ``=`` means empty)."""
    if arg == "=":
        return b""
    try:
        return base64.b64decode(arg, validate=True)
    except binascii.Error:
        return None


def _parse_xoauth2(blob: bytes) -> tuple[str, str] | None:
    """(user, token) from ``user=U^Aauth=Bearer T^A^A`` (Google's XOAUTH2 protocol), or None."""
    user = token = None
    for part in blob.decode("utf-8", "replace").split("\x01"):
        if part.startswith("user="):
            user = part[5:]
        elif part[:12].lower() == "auth=bearer ":
            token = part[12:].strip()
    return (user, token) if user is not None and token else None


def _parse_oauthbearer(blob: bytes) -> tuple[str, str] | None:
    """(authzid or "", token) from ``n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A`` (RFC 7628 s.3.1)."""
    text = blob.decode("utf-8", "replace")
    gs2, sep, rest = text.partition("\x01")
    if not sep or not gs2.startswith(("n,", "y,")):
        return None
    user = ""
    for attribute in gs2.split(",")[1:]:
        if attribute.startswith("a="):
            # RFC 5801 s.4: "=2C" and "=3D" escape "," and "=" in the authzid.
            user = attribute[2:].replace("=2C", ",").replace("=3D", "=")
    for part in rest.split("\x01"):
        if part[:12].lower() == "auth=bearer ":
            token = part[12:].strip()
            return (user, token) if token else None
    return None


def offer_pipelining(session: Any, hostname: str, responses: list[str]) -> list[str]:
    """An aiosmtpd ``handle_EHLO`` result offering PIPELINING (RFC 2920), as Gmail and Microsoft 365 do.

    aiosmtpd reads commands one after another from its stream, so pipelined commands are handled in order;
    it only does not say so.
    """
    session.host_name = hostname  # aiosmtpd leaves this to an EHLO hook
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


class SmtpHandler:
    """aiosmtpd handler: the SASL mechanisms, the sender check and the delivery into the inbox."""

    def __init__(
        self, config: SandboxConfig, state: SandboxState, inbox: Inbox, faults: SmtpFaults | None = None
    ) -> None:
        self._config = config
        self._state = state
        self._inbox = inbox
        self._faults = faults or SmtpFaults()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        return offer_pipelining(session, hostname, responses)

    async def _client_response(self, server: Any, args: list[str]) -> bytes | None:
        """The SASL initial response, or the answer to an empty 334 when the client sent none."""
        if len(args) > 1:
            blob = _decode_initial_response(args[1])
            if blob is None:
                await server.push("501 5.5.2 Cannot decode response")
            return blob
        answer = await server.challenge_auth("")
        return None if answer is MISSING else bytes(answer)

    def _verdict(self, check: SmtpAuthCheck, mechanism: str, *, password: bool = False) -> AuthResult:
        style = self._config.smtp_failure_style
        if check.account is None:
            self._state.counters["smtp_auth_failed"] += 1
            return AuthResult(success=False, handled=False, message=f"{_FAILED[style]} [sandbox: {check.reason}]")
        refusal = self._faults.on_auth(check.account, password=password)
        if refusal is not None:  # a fault switched on for this mailbox (smtp_faults.py)
            self._state.counters["smtp_auth_failed"] += 1
            return AuthResult(success=False, handled=False, message=refusal)
        self._state.counters["smtp_auth_ok"] += 1
        return AuthResult(success=True, message=_ACCEPTED[style], auth_data=SmtpIdentity(check.account, mechanism))

    async def _fail_after_challenge(self, server: Any, challenge: dict[str, str], check: SmtpAuthCheck) -> AuthResult:
        # The client must answer the error challenge (an empty line for XOAUTH2, ^A for OAUTHBEARER)
        # before the final 535; aiosmtpd answers a "*" cancel itself.
        answer = await server.challenge_auth(json.dumps(challenge).encode(), encode_to_b64=True)
        if answer is MISSING:
            self._state.counters["smtp_auth_failed"] += 1
            return AuthResult(success=False, handled=True)
        return self._verdict(check, "")

    async def _check_token(
        self, server: Any, args: list[str], parse: Callable[[bytes], tuple[str, str] | None], mechanism: str
    ) -> SmtpAuthCheck | None:
        """Read the client's response and check the bearer token in it; None when the client gave up."""
        blob = await self._client_response(server, args)
        if blob is None:
            self._state.counters["smtp_auth_failed"] += 1
            return None
        parsed = parse(blob)
        if parsed is None:
            return SmtpAuthCheck(None, f"malformed {mechanism} response")
        return self._state.check_smtp_token(parsed[1], parsed[0])

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        """SASL XOAUTH2 (Google's and Microsoft's bearer-token mechanism for SMTP)."""
        check = await self._check_token(server, args, _parse_xoauth2, "XOAUTH2")
        if check is None:
            return AuthResult(success=False, handled=True)
        if check.account is None and self._config.smtp_failure_style == "google":
            return await self._fail_after_challenge(server, _GOOGLE_CHALLENGE, check)
        return self._verdict(check, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: Any, args: list[str]) -> AuthResult:
        """SASL OAUTHBEARER (RFC 7628): on failure a JSON error challenge, the client's ^A, then 535."""
        check = await self._check_token(server, args, _parse_oauthbearer, "OAUTHBEARER")
        if check is None:
            return AuthResult(success=False, handled=True)
        if check.account is None:
            scope = "https://mail.google.com/" if self._config.smtp_failure_style == "google" else ""
            challenge = {"status": "invalid_token", "schemes": "bearer", "scope": scope}
            return await self._fail_after_challenge(server, challenge, check)
        return self._verdict(check, "OAUTHBEARER")

    def password_authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """AUTH PLAIN / LOGIN against ``config.smtp_password_users`` (only offered when it is not empty)."""
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            expected = self._config.smtp_password_users.get(login)
            if expected is not None and hmac.compare_digest(auth_data.password, expected.encode()):
                return self._verdict(SmtpAuthCheck(login), mechanism, password=True)
        self._state.counters["smtp_auth_failed"] += 1
        return AuthResult(success=False, handled=False, message=_FAILED[self._config.smtp_failure_style])

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        """Exchange refuses a sender other than the authenticated mailbox (without Send As rights)."""
        identity = session.auth_data
        refusal = self._faults.on_mail(identity.account) if isinstance(identity, SmtpIdentity) else None
        if not isinstance(identity, SmtpIdentity) or address.lower() != identity.account.lower() or refusal:
            self._state.counters["smtp_sender_refused"] += 1
            return refusal or _SEND_AS_REFUSED
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep the message in the inbox."""
        identity = session.auth_data
        raw = envelope.original_content or envelope.content or b""
        message = self._inbox.add(
            mail_from=str(envelope.mail_from),
            rcpt_tos=[str(r) for r in envelope.rcpt_tos],
            account=identity.account if isinstance(identity, SmtpIdentity) else "",
            raw=bytes(raw),
        )
        self._state.counters["smtp_messages"] += 1
        return f"250 2.0.0 OK <{message.id}@sandbox> queued as {message.id}"


class SmtpServer:
    """The listening SMTP server on the current event loop; ``stop()`` closes open sessions too."""

    def __init__(
        self,
        config: SandboxConfig,
        state: SandboxState,
        inbox: Inbox,
        tls_context: ssl.SSLContext,
        faults: SmtpFaults | None = None,
    ) -> None:
        self._config = config
        self._handler = SmtpHandler(config, state, inbox, faults)
        self._tls_context = tls_context
        self._connections: set[_SandboxSMTP] = set()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> _SandboxSMTP:
        return _SandboxSMTP(
            self._handler,
            self._connections,
            hostname="localhost",
            ident="mailgate sandbox ESMTP",
            tls_context=self._tls_context,
            require_starttls=True,  # RFC 3207: nothing but EHLO/NOOP/QUIT before STARTTLS
            auth_require_tls=True,
            auth_required=True,  # MAIL before AUTH: 530
            auth_exclude_mechanism=[] if self._config.smtp_password_users else ["PLAIN", "LOGIN"],
            authenticator=self._handler.password_authenticator,
            data_size_limit=self._config.smtp_max_message_size,
            loop=asyncio.get_running_loop(),
        )

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host``:``port`` (0: a free port); returns the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host=host, port=port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and drop every open session."""
        if self._server is None:
            return
        self._server.close()
        for protocol in list(self._connections):
            # Through the public transport only: its connection_lost follows, where aiosmtpd closes the transport
            # under TLS and cancels the session's task, and the session leaves _connections.
            transport = protocol.transport
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
            elif transport is not None:
                transport.close()
        for _ in range(100):  # bounded: 5 s
            if not self._connections:
                break
            await asyncio.sleep(0.05)
        await self._server.wait_closed()
        self._server = None

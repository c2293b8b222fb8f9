"""The relay's SMTP conversation (an aiosmtpd handler): AUTH PLAIN/LOGIN, the sender check, the recipient
limit, and DATA committed to the outbox before the 250.

Replies follow RFC 5321 s4.2 and the enhanced status codes of RFC 3463 / RFC 4954: 530 (authentication
required), 535 (bad credentials), 550 5.7.1 (sender not allowed), 452 4.5.3 (too many recipients), 552
(too large), 451 (not queued: try again).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import ipaddress
import logging
import re
from collections.abc import Sequence
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from ..errors import MailgateError, ValidationError
from ..message import MessageTooLargeError, from_raw
from ..message.checks import HEAVY_BYTES
from ..outbox import Outbox
from ..smtp import parse_mailbox
from .guard import FailedLogins, RelayMetrics
from .users import DEFAULT_ACCOUNT, RelayUser, RelayUsers, SenderCheck, sender_matches

__all__ = ["RelayHandler", "SessionRecord", "peer_host"]

log = logging.getLogger("mailgate.relay")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BAD_CREDENTIALS = (
    "535 5.7.8 Authentication credentials invalid: use the user name and the password that "
    "`mailgate relay user add` printed"
)
AUTH_REQUIRED = "530 5.7.0 Authentication required: log in (AUTH PLAIN or LOGIN, after STARTTLS) first"
#: Prepended to the message for from_raw, which wants a recipient in the header: the envelope's recipients
#: are the recipients, and Bcc is removed from what is delivered.  (RFC 5322 s3.6.3 allows a message without
#: To and Cc, or with only ``To: undisclosed-recipients:;``, as cron and Bcc-only senders write.)
_ENVELOPE_BCC = "Bcc: {}\r\n"
#: A To, Cc or Bcc field with an address on its first line (else the message gets _ENVELOPE_BCC).
_ADDRESSED = re.compile(rb"^(?:to|cc|bcc)[ \t]*:[^\r\n]*@", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
#: An address that parse_mailbox accepts as it is: a dot-atom in ASCII, @, a domain name with a dot (RFC 5322
#: s3.4.1).  Recipients are mostly such; checking them so skips the email package's parser, which costs more
#: than the rest of RCPT.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


@dataclasses.dataclass
class SessionRecord:
    """What one relay connection did, logged when it ends (never a password)."""

    peer: str
    user: str = ""
    queued: list[str] = dataclasses.field(default_factory=list)
    failed_logins: int = 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_address(address: str) -> None:
    """ValueError saying what is wrong with an envelope address (parse_mailbox's verdict)."""
    if _PLAIN_ADDRESS.fullmatch(address) is None:
        parse_mailbox(address)


class RelayHandler:
    """aiosmtpd handler of the relay.  ``sender_allowed(account, address)`` decides which senders an account
    may use; a user may also send as the addresses of its own ``senders`` list."""

    def __init__(
        self,
        users: RelayUsers,
        outbox: Outbox,
        sender_allowed: SenderCheck,
        *,
        metrics: RelayMetrics,
        failed_logins: FailedLogins,
        trusted_networks: Sequence[Network] = (),
    ) -> None:
        self._users = users
        self._outbox = outbox
        self._sender_allowed = sender_allowed
        self._metrics = metrics
        self._failed = failed_logins
        self._trusted = tuple(trusted_networks)

    # -- helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def record(server: SMTP) -> SessionRecord:
        record: SessionRecord = server.relay_record  # type: ignore[attr-defined]  # set by RelaySMTP
        return record

    def _trusted_peer(self, session: Session) -> bool:
        if not self._trusted or not session.peer:
            return False
        try:
            address = ipaddress.ip_address(session.peer[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._trusted)

    def _identity(self, session: Session) -> RelayUser | None:
        user = session.auth_data if session.authenticated else None
        return user if isinstance(user, RelayUser) else None

    async def _may_send(self, account: str, senders: Sequence[str], address: str) -> bool:
        return sender_matches(address, senders) or await self._sender_allowed(account, address)

    # -- AUTH (RFC 4954; PLAIN: RFC 4616; LOGIN: draft-murchison-sasl-login) -----------------------------

    async def _response(self, server: SMTP, args: list[str], challenge: str) -> bytes | None:
        """The initial response (``=``: empty) or the answer to a challenge; None when the client gave up or
        sent bad base64 (aiosmtpd or this method has replied)."""
        if len(args) > 1:
            if args[1] == "=":
                return b""
            try:
                return base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Cannot decode the base64 response")
                return None
        answer = await server.challenge_auth(challenge)
        return None if answer is MISSING else bytes(answer)

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = await self._response(server, args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await server.push("501 5.5.2 PLAIN response must be authzid NUL user NUL password")
            return AuthResult(success=False, handled=True)
        return await self._login(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        name = await self._response(server, args, "Username:")
        if name is None:
            return AuthResult(success=False, handled=True)
        password = await self._response(server, [], "Password:")
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._login(server, name, password)

    async def _login(self, server: SMTP, name_bytes: bytes, password_bytes: bytes) -> AuthResult:
        record = self.record(server)
        name = name_bytes.decode("utf-8", "replace")
        try:
            user = await self._users.authenticate(name, password_bytes.decode("utf-8", "replace"))
        except Exception:
            log.exception("relay %s: the login of %r could not be checked", record.peer, name)
            return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")
        if user is None:
            self._metrics.logins_failed += 1
            record.failed_logins += 1
            wait = self._failed.failed(record.peer)
            log.warning("relay %s: login failed for user %r; answering in %.1fs", record.peer, name[:64], wait)
            await asyncio.sleep(wait)  # this session only
            return AuthResult(success=False, handled=False, message=BAD_CREDENTIALS)
        self._failed.succeeded(record.peer)
        record.user = user.name
        return AuthResult(success=True, handled=False, auth_data=user, message="235 2.7.0 Authentication successful")

    # -- the transaction -------------------------------------------------------------------------------

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        """Advertise SIZE as the outbox's limit (read again at most once a second).  The reply's lines go out as
        one string: aiosmtpd writes each string of the list by itself, a TLS record and a packet per line, and
        the client reads them one by one; every application that connects per message says EHLO twice."""
        session.host_name = hostname
        limit = (await self._outbox.limits()).max_bytes  # one size limit for every account
        server.data_size_limit = limit  # enforced by aiosmtpd: 552 at MAIL (SIZE=) and during DATA
        return ["\r\n".join(f"250-SIZE {limit}" if line.startswith("250-SIZE") else line for line in responses)]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        user = self._identity(session)
        if user is None and not self._trusted_peer(session):
            return AUTH_REQUIRED
        account, senders, who = (user.account, user.senders, user.name) if user else (DEFAULT_ACCOUNT, (), "")
        if not address:
            return "550 5.7.1 A sender address is required: the relay does not send bounces (MAIL FROM:<>)"
        try:
            _check_address(address)
        except ValueError as exc:
            return f"553 5.1.7 The sender <{address}> {_one_line(str(exc))}"
        if not await self._may_send(account, senders, address):
            self._metrics.senders_refused += 1
            whom = f"relay user {who!r} (account {account!r})" if who else f"account {account!r}"
            return (
                f"550 5.7.1 {whom} may not send as <{address}>: use the account's own address, or allow this one "
                "with `mailgate relay user add NAME --sender ADDRESS`"
            )
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        user = self._identity(session)
        limits = await self._outbox.limits(user.account if user else DEFAULT_ACCOUNT)
        if limits.max_recipients and len(envelope.rcpt_tos) >= limits.max_recipients:
            who = limits.provider or "the provider"
            return (
                f"452 4.5.3 Too many recipients: {who} accepts at most {limits.max_recipients} per message; "
                "send the others in another message"
            )
        try:
            _check_address(address)
        except ValueError as exc:
            return f"553 5.1.3 The recipient <{address}> {_one_line(str(exc))}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Check the message as the messages API does (``from_raw``), then commit it to the outbox: the 250
        goes out only once the commit returned (RFC 5321 s6.1: from then on, the message is ours)."""
        user = self._identity(session)
        account, senders = (user.account, user.senders) if user else (DEFAULT_ACCOUNT, ())
        sender = envelope.mail_from or ""
        content = envelope.content
        assert isinstance(content, bytes)  # decode_data=False
        end = _HEADER_END.search(content)
        addressed = _ADDRESSED.search(content, 0, end.start() if end else len(content))
        if not addressed and envelope.rcpt_tos and envelope.rcpt_tos[0].isascii():
            content = _ENVELOPE_BCC.format(envelope.rcpt_tos[0]).encode() + content
        limits = dataclasses.replace(await self._outbox.limits(account), default_sender=sender, max_recipients=0)
        try:
            # Recipients: the envelope's (RCPT TO), already counted; From defaults to MAIL FROM.  A large message
            # is checked in a worker thread, as the messages API does: parsing it must not stall other sessions.
            if len(content) > HEAVY_BYTES:
                checked = await asyncio.to_thread(from_raw, content, limits)
            else:
                checked = from_raw(content, limits)
        except MessageTooLargeError as exc:
            return f"552 5.3.4 {_one_line(exc.message)}: the limit is {limits.max_bytes} bytes"
        except ValidationError as exc:
            problems = "; ".join(f"{name} {text}" for name, text in exc.errors.items())
            return f"554 5.6.0 The message was refused, nothing was queued: {_one_line(problems)}"
        if checked.sender.lower() != sender.lower() and not await self._may_send(account, senders, checked.sender):
            self._metrics.senders_refused += 1
            return f"550 5.7.1 The From address <{checked.sender}> is not one this user may send as"
        message = dataclasses.replace(checked, sender=sender, recipients=tuple(dict.fromkeys(envelope.rcpt_tos)))
        try:
            # Shielded: a client that disconnects now (after its final ".") does not cut the commit short; the
            # message is then delivered although the client saw no 250 (RFC 5321 s6.1 accepts that duplicate).
            view, _ = await asyncio.shield(self._outbox.enqueue(message, account_id=account))
        except MailgateError as exc:
            return f"451 4.3.0 Not queued: {_one_line(exc.message)}; try again later"
        except Exception:
            log.exception("relay %s: a message could not be queued", self.record(server).peer)
            return "451 4.3.0 Not queued: the outbox could not store the message; try again later"
        self._metrics.messages_accepted += 1
        self.record(server).queued.append(f"{view.id} {checked.message_id}")
        return f"250 2.0.0 OK queued as {view.id}"

    async def handle_exception(self, error: Exception) -> str:
        log.error("relay: unexpected error in an SMTP session", exc_info=error)
        return "451 4.3.0 Temporary server error; try again later"


def peer_host(peer: Any) -> str:
    """The address of an aiosmtpd ``session.peer`` (a socket address tuple), as text."""
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "unknown")

"""Messages the sandbox SMTP server accepted: kept in memory and, with a state dir, as ``.eml`` files."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import cached_property
from pathlib import Path

__all__ = ["Inbox", "ReceivedMessage"]


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted message: the SMTP envelope, the authenticated account and the raw bytes."""

    id: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    #: The mailbox the SMTP session authenticated as.
    account: str
    raw: bytes = field(repr=False)
    received_at: datetime

    @cached_property
    def message(self) -> EmailMessage:
        """The parsed message (RFC 5322, lenient as the email package is)."""
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def header(self, name: str) -> str:
        """A header's decoded value, or ""."""
        value = self.message.get(name)
        return "" if value is None else str(value)

    @property
    def subject(self) -> str:
        return self.header("Subject")

    def text_body(self) -> str:
        """The plain text part (or the HTML one, as source, when there is no plain text)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        try:
            content = part.get_content()
        except (LookupError, ValueError):  # unknown charset, broken transfer encoding
            payload = part.get_payload(decode=True)
            return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        return content if isinstance(content, str) else ""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready view (``GET /inbox.json``), raw message included."""
        return {
            "id": self.id,
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "account": self.account,
            "subject": self.subject,
            "from": self.header("From"),
            "to": self.header("To"),
            "date": self.header("Date"),
            "message_id": self.header("Message-ID"),
            "received_at": self.received_at.isoformat(),
            "size": len(self.raw),
            "raw": self.raw.decode("utf-8", "replace"),
        }


class Inbox:
    """The messages received, in arrival order; written to ``directory`` as ``.eml`` when given."""

    def __init__(self, directory: Path | None = None) -> None:
        #: Where ``.eml`` copies are written; None: memory only.
        self.directory = directory
        self._messages: list[ReceivedMessage] = []
        self._next_id = 1

    def add(self, *, mail_from: str, rcpt_tos: list[str], account: str, raw: bytes) -> ReceivedMessage:
        """Keep a message; returns it with its id."""
        message = ReceivedMessage(
            id=self._next_id,
            mail_from=mail_from,
            rcpt_tos=tuple(rcpt_tos),
            account=account,
            raw=raw,
            received_at=datetime.now(UTC),
        )
        self._next_id += 1
        self._messages.append(message)
        if self.directory is not None:
            name = f"{message.received_at:%Y%m%dT%H%M%S}-{message.id:05d}.eml"
            (self.directory / name).write_bytes(raw)
        return message

    def messages(self) -> list[ReceivedMessage]:
        """A copy of the list, oldest first."""
        return list(self._messages)

    def get(self, message_id: int) -> ReceivedMessage | None:
        for message in self._messages:
            if message.id == message_id:
                return message
        return None

    def clear(self) -> None:
        """Forget the messages in memory (the ``.eml`` files stay)."""
        self._messages.clear()

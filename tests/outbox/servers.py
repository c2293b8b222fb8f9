"""An aiosmtpd mailbox that fails chosen messages: replies scripted per recipient, then accepts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from ..smtp.servers import Mailbox


@dataclass
class ScriptedMailbox(Mailbox):
    """``data_script[rcpt]``: replies to give (in order) at DATA for messages to ``rcpt``, before accepting;
    ``rcpt_script[rcpt]``: the same at RCPT.  The reply ``"DROP"`` drops the connection instead.
    """

    data_script: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rcpt_script: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        script = self.rcpt_script.get(address)
        if script:
            reply = script.pop(0)
            if reply == "DROP":
                await self._drop(server)
            return reply
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for rcpt in envelope.rcpt_tos:
            script = self.data_script.get(rcpt)
            if script:
                reply = script.pop(0)
                if reply == "DROP":
                    await self._drop(server)
                return reply
        return await super().handle_DATA(server, session, envelope)

    def received_by(self, rcpt: str) -> list[Any]:
        return [m for m in self.messages if rcpt in m.rcpt_tos]

"""A connection's results are committed in step with its messages: a message's result is written while the
next message's envelope goes out, and committed before that message's DATA.  So at any moment at most one
message per connection has been accepted by the server without its result committed (the bound on
duplicates after a crash), and a result that cannot be recorded stops the connection before it hands over
another message.

The server checks the database itself, from its handler, at the end of every DATA: each message it accepted
before on the same connection must already be ``sent`` there, not ``sending``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Executable, select
from sqlalchemy.exc import OperationalError

from mailgate.outbox.policy import Status
from mailgate.store import Database
from mailgate.store.models import OutboxMessageRow

from ..smtp.servers import Mailbox, RunningServer
from .conftest import Env, EnvFactory, use_server

MESSAGES = 20


@dataclass
class CheckingMailbox(Mailbox):
    """A Mailbox that logs the mail commands it gets and, before accepting a message, reads the outbox (on
    the test's event loop) for the status of every message accepted before on the same connection."""

    loop: asyncio.AbstractEventLoop | None = None
    db: Database | None = None
    #: Recipient address -> outbox id of the message sent to it (one recipient per message).
    ids: dict[str, str] = field(default_factory=dict)
    #: (command, address) in the order they arrived: MAIL, RCPT, DATA (end of data), RSET.
    log: list[tuple[str, str]] = field(default_factory=list)
    #: At each DATA: the recipient of the new message and the statuses of the earlier ones.
    checks: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def _statuses(self, ids: Collection[str]) -> dict[str, str]:
        assert self.db is not None
        async with self.db.session() as session:
            rows = await session.execute(
                select(OutboxMessageRow.id, OutboxMessageRow.status).where(OutboxMessageRow.id.in_(list(ids)))
            )
            return {row_id: status for row_id, status in rows.all()}

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.log.append(("MAIL", address))
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.log.append(("RCPT", address))
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.log.append(("RSET", ""))
        return "250 2.0.0 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        [rcpt] = envelope.rcpt_tos
        self.log.append(("DATA", rcpt))
        earlier = [self.ids[m.rcpt_tos[0]] for m in self.messages if m.peer == session.peer]
        if earlier:
            # This handler runs on the server's thread: ask the test's loop, where the database lives.
            assert self.loop is not None
            future = asyncio.run_coroutine_threadsafe(self._statuses(earlier), self.loop)
            self.checks.append((rcpt, await asyncio.wrap_future(future)))
        return await super().handle_DATA(server, session, envelope)


def _rcpt(i: int) -> str:
    return f"r{i}@example.com"


async def _setup(
    make_env: EnvFactory, start_server: Callable[..., RunningServer], ca_file: str
) -> tuple[Env, CheckingMailbox, list[str]]:
    # One connection: the order of the messages on it is the order of the batch.  (The bundled catalogue's
    # sandbox provider has smtp_host 127.0.0.1, so its max_connections applies to the test server.)
    env: Env = await make_env(providers_toml="[providers.sandbox]\nmax_connections = 1\n", default_connections=1)
    db = env.services.db
    box = CheckingMailbox(loop=asyncio.get_running_loop(), db=db)
    server = start_server(box, tls="starttls")
    await use_server(env, server, ca_file)
    ids: list[str] = []
    for i in range(MESSAGES):
        ids.append(await env.post(to=[_rcpt(i)], subject=f"m{i}"))
        env.clock.advance(0.001)  # due one after the other: claimed, so sent, in this order
    box.ids = {_rcpt(i): message_id for i, message_id in enumerate(ids)}
    return env, box, ids


Execute = Callable[..., Any]


def _recording(params: Mapping[str, Any], ids: list[str]) -> int | None:
    """The index of the message whose ``sent`` result ``params`` records, else None."""
    if params.get("status") != Status.SENT.value or params.get("_id") not in ids:
        return None
    return ids.index(params["_id"])


async def test_previous_result_is_committed_before_the_next_data(
    make_env: EnvFactory, start_server: Callable[..., RunningServer], ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, box, ids = await _setup(make_env, start_server, ca_file)
    writes = env.services.outbox.writes
    execute: Execute = writes.execute

    async def slow_record(statement: Executable, params: Mapping[str, Any], **options: Any) -> int:
        if _recording(params, ids) is not None:
            # Slow enough that a next message that did not wait for this commit would reach the server's
            # check first.
            await asyncio.sleep(0.02)
            # Not waiting for the disk (the next message waits for this commit): see outbox.commit.
            assert options == {"sync": False}
        result: int = await execute(statement, params, **options)
        return result

    monkeypatch.setattr(writes, "execute", slow_record)

    assert await env.worker.drain() == MESSAGES

    assert [m.rcpt_tos for m in box.messages] == [(_rcpt(i),) for i in range(MESSAGES)]
    assert len({m.peer for m in box.messages}) == 1
    # Every DATA after the first found all the earlier messages of its connection recorded as sent.
    assert [rcpt for rcpt, _ in box.checks] == [_rcpt(i) for i in range(1, MESSAGES)]
    for i, (_, statuses) in enumerate(box.checks, start=1):
        assert statuses == {message_id: "sent" for message_id in ids[:i]}, f"at the DATA of message {i}"
    assert {(await env.status(message_id))["status"] for message_id in ids} == {"sent"}


@pytest.mark.parametrize(
    "make_failure",
    [
        pytest.param(
            lambda: OperationalError("UPDATE outbox_messages ...", {}, OSError("disk I/O error")), id="db-error"
        ),
        # An OSError (or TimeoutError) out of the database layer must not be taken for a network error of the
        # SMTP layer (one of its CLIENT_ERRORS).
        pytest.param(lambda: OSError(5, "Input/output error"), id="oserror"),
    ],
)
async def test_a_result_that_cannot_be_recorded_stops_the_connection_before_the_next_data(
    make_env: EnvFactory,
    start_server: Callable[..., RunningServer],
    ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
    make_failure: Callable[[], Exception],
) -> None:
    env, box, ids = await _setup(make_env, start_server, ca_file)
    failing = 4
    failure = make_failure()
    writes = env.services.outbox.writes
    execute: Execute = writes.execute
    failed: list[int] = []

    async def fail_one_record(statement: Executable, params: Mapping[str, Any], **options: Any) -> int:
        if _recording(params, ids) == failing and not failed:
            failed.append(failing)
            raise failure
        result: int = await execute(statement, params, **options)
        return result

    monkeypatch.setattr(writes, "execute", fail_one_record)

    # The worker's cycle surfaces the database error (Worker.run logs it and carries on).
    with pytest.raises(type(failure)) as caught:
        await env.worker.run_once()
    assert caught.value is failure and failed == [failing]

    # Nothing was handed over after the message whose result was lost: the next one got as far as its
    # envelope (sent while the result was being written), then the connection was closed before its DATA.
    assert [m.rcpt_tos for m in box.messages] == [(_rcpt(i),) for i in range(failing + 1)]
    assert box.log[-3:] == [("DATA", _rcpt(failing)), ("MAIL", box.user), ("RCPT", _rcpt(failing + 1))]
    shown = [await env.status(message_id) for message_id in ids]
    assert [s["status"] for s in shown[:failing]] == ["sent"] * failing
    # The delivered but unrecorded message is still leased to the worker; those not attempted went back to
    # the queue at the end of the cycle, without an attempt counted.
    assert shown[failing]["status"] == "sending"
    assert {s["status"] for s in shown[failing + 1 :]} == {"retrying"}
    assert {s["attempts"] for s in shown[failing + 1 :]} == {0}

    # When the lease runs out they are delivered: only the unrecorded one twice.
    env.clock.advance(env.settings.outbox.lease_seconds + 1)
    assert await env.worker.drain() == MESSAGES - failing
    assert {(await env.status(message_id))["status"] for message_id in ids} == {"sent"}
    delivered = [m.rcpt_tos[0] for m in box.messages]
    assert sorted(delivered) == sorted([_rcpt(i) for i in range(MESSAGES)] + [_rcpt(failing)])

"""Sessions of the relay: a client gone mid-DATA, the login delay that stalls no one else, trusted networks,
implicit TLS, and 100 messages from 16 parallel clients through the sandbox's XOAUTH2 server."""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import dataclasses
import email
import email.policy
import ipaddress
import smtplib
import socket
import ssl
from collections.abc import AsyncIterator

import pytest

from mailgate.errors import ConfigurationError
from mailgate.relay import FailedLogins, RelayServer

from ..outbox.conftest import SandboxEnv, sandbox_env  # noqa: F401 - fixture
from .conftest import SENDER, Relay, RelayFactory, relay_of, start_relay

API = "/ddenterpriseapi/v2"


class Raw:
    """A hand-driven SMTP client over STARTTLS (to stop anywhere in the dialogue)."""

    def __init__(
        self, relay: Relay, session: ssl.SSLSession | None = None, context: ssl.SSLContext | None = None
    ) -> None:
        self.relay = relay
        self.sock = socket.create_connection(("127.0.0.1", relay.port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.reply()
        self.cmd("EHLO raw.test")
        self.cmd("STARTTLS")
        tls = context or relay.context()  # a session is resumed with the context that made it
        self.sock = tls.wrap_socket(self.sock, server_hostname="localhost", session=session)
        self.file = self.sock.makefile("rb")
        self.cmd("EHLO raw.test")  # a TLS 1.3 session ticket arrives with the first reply

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "".join(lines)

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def login(self, password: str) -> str:
        blob = base64.b64encode(f"\0{self.relay.user}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {blob}")


async def test_disconnect_mid_data_queues_nothing(relay: Relay) -> None:
    def go() -> None:
        raw = Raw(relay)
        assert raw.login(relay.password).startswith("235")
        assert raw.cmd(f"MAIL FROM:<{SENDER}>").startswith("250")
        assert raw.cmd("RCPT TO:<bob@example.com>").startswith("250")
        assert raw.cmd("DATA").startswith("354")
        raw.sock.sendall(b"From: user@example.com\r\nTo: bob@example.com\r\nSubject: cut\r\n\r\nhalf of the ")
        raw.sock.close()  # no final "."

    await asyncio.to_thread(go)
    # The session ends on the server (its log line is written when the connection is lost).
    for _ in range(200):
        if relay.env.services.relay_metrics.sessions and not relay.server._connections:
            break
        await asyncio.sleep(0.01)
    assert await relay.queued() == 0
    # The relay still works afterwards.
    await asyncio.to_thread(lambda: relay.client().sendmail(SENDER, ["bob@example.com"], b"Subject: ok\r\n\r\nok\r\n"))
    assert await relay.queued() == 1


async def test_failed_login_delay_stalls_no_one_else(make_relay: RelayFactory) -> None:
    # A delay long enough that the second failure's answer cannot come during the test.
    guard = FailedLogins(base=3600.0, ceiling=3600.0)
    relay: Relay = await make_relay(failed_logins=guard)
    guesser = await asyncio.to_thread(Raw, relay)
    pending = asyncio.ensure_future(asyncio.to_thread(guesser.login, "a-guess"))
    while guard.failures("127.0.0.1") == 0:  # the relay has refused it and is holding back its 535
        await asyncio.sleep(0.01)
    # Meanwhile another client (from the same address, even) logs in and sends.

    def other() -> dict[str, tuple[int, bytes]]:
        with relay.client() as client:
            return client.sendmail(SENDER, ["bob@example.com"], b"Subject: x\r\n\r\nx\r\n")

    assert await asyncio.to_thread(other) == {}
    assert await relay.queued() == 1
    assert not pending.done()  # the guesser still waits for its answer
    guesser.sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        assert "535" not in await pending


async def test_trusted_network_relays_without_auth(make_relay: RelayFactory) -> None:
    relay: Relay = await make_relay(relay={"trusted_networks": (ipaddress.ip_network("127.0.0.0/8"),)})

    def go() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as client:  # no TLS, no AUTH: an old printer
            return client.sendmail(SENDER, ["bob@example.com"], b"Subject: scan\r\n\r\nscan\r\n")

    assert await asyncio.to_thread(go) == {}
    assert await relay.queued() == 1

    def forbidden() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as client:
            client.ehlo()
            return client.mail("ceo@example.com")

    code, _ = await asyncio.to_thread(forbidden)
    assert code == 550


async def test_not_trusted_by_default(relay: Relay) -> None:
    def go() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as client:
            client.ehlo()
            return client.mail(SENDER)

    code, _ = await asyncio.to_thread(go)
    assert code == 530  # STARTTLS first, then AUTH: nothing relays without either


async def test_implicit_tls_port(make_relay: RelayFactory) -> None:
    relay: Relay = await make_relay(relay={"tls_port": 0})
    assert relay.tls_port is not None

    def go() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP_SSL("127.0.0.1", relay.tls_port, context=relay.context(), timeout=30) as client:
            client.login(relay.user, relay.password)
            return client.sendmail(SENDER, ["bob@example.com"], b"Subject: tls\r\n\r\ntls\r\n")

    assert await asyncio.to_thread(go) == {}
    assert await relay.queued() == 1


@pytest.fixture
async def relays() -> AsyncIterator[list[RelayServer]]:
    started: list[RelayServer] = []
    yield started
    for server in started:
        await server.stop()


MESSAGES = 100
CLIENTS = 16


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_100_messages_from_16_parallel_clients_each_delivered_once(
    sandbox_env: SandboxEnv,  # noqa: F811
    relays: list[RelayServer],
) -> None:
    env, harness, sandbox = sandbox_env.env, sandbox_env.harness, sandbox_env.sandbox
    assert (await harness.authorize()).status_code == 200
    account = "alice@sandbox.test"
    assert (await env.api.put(f"{API}/email/server", json={"sender": account})).status_code == 200
    _, certificate, port, _, password = await start_relay(env, relays)
    context = ssl.create_default_context(cafile=str(certificate.cert_path))

    def send(i: int) -> None:
        # One message per connection, as cron jobs and monitoring do.
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.starttls(context=context)
            client.login("app1", password)
            raw = f"From: {account}\r\nTo: r{i}@example.com\r\nSubject: parallel {i}\r\n\r\nmessage {i}\r\n"
            client.sendmail(account, [f"r{i}@example.com", f"cc{i}@example.com"], raw.encode())

    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        await asyncio.gather(*(loop.run_in_executor(pool, send, i) for i in range(MESSAGES)))
    assert await env.stored_count() == MESSAGES
    assert env.services.relay_metrics.messages_accepted == MESSAGES
    # Microsoft (the sandbox's style here) allows 30 messages a minute: advance mailgate's clock between drains.
    for _ in range(10):
        await env.worker.drain()
        if len(sandbox.messages) >= MESSAGES:
            break
        env.clock.advance(61)
    subjects = collections.Counter(
        str(email.message_from_bytes(m.raw, policy=email.policy.default)["Subject"]) for m in sandbox.messages
    )
    assert subjects == collections.Counter(f"parallel {i}" for i in range(MESSAGES))
    by_subject = {m.subject: m for m in sandbox.messages}
    assert set(by_subject["parallel 7"].rcpt_tos) == {"r7@example.com", "cc7@example.com"}
    assert all(m.account == account for m in sandbox.messages)  # over XOAUTH2, as the consenting mailbox


async def test_a_port_in_use_is_a_clear_error(relay: Relay) -> None:
    services = relay.env.services
    settings = dataclasses.replace(services.settings.relay, port=relay.port)
    second, _ = relay_of(services, settings)
    with pytest.raises(ConfigurationError) as caught:
        await second.start()
    assert f"port {relay.port}" in caught.value.message and "free port" in caught.value.hint


async def test_the_ehlo_reply_is_written_at_once(relay: Relay) -> None:
    # aiosmtpd writes each line of a multi-line reply by itself (over TLS: a record each); the relay hands it
    # the EHLO reply as one string, so the client gets it in one read.
    def go() -> bytes:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=30) as sock:
            greeting = sock.recv(4096)
            assert greeting.startswith(b"220 "), greeting
            sock.sendall(b"EHLO raw.test\r\n")
            return sock.recv(65536)

    reply = await asyncio.to_thread(go)
    lines = reply.decode().split("\r\n")
    assert lines[-1] == "" and lines[-2] == "250 HELP", reply
    assert all(line.startswith("250-") for line in lines[:-2]), reply
    assert "250-STARTTLS" in lines and any(line.startswith("250-SIZE ") for line in lines)
    assert not any("AUTH" in line for line in lines)  # not before STARTTLS


async def test_a_client_that_keeps_its_tls_session_resumes_it(relay: Relay) -> None:
    # Clients that keep TLS sessions (Postfix, Java, .NET) save a full handshake on the next connection.
    def connect(session: ssl.SSLSession | None) -> tuple[ssl.SSLSession | None, bool]:
        raw = Raw(relay, session, context)
        assert raw.login(relay.password).startswith("235")
        assert isinstance(raw.sock, ssl.SSLSocket)
        kept, reused = raw.sock.session, raw.sock.session_reused
        assert raw.cmd("QUIT").startswith("221")
        raw.sock.close()
        return kept, reused

    context = relay.context()

    def go() -> tuple[bool, bool]:
        session, first = connect(None)
        assert session is not None
        return first, connect(session)[1]

    assert await asyncio.to_thread(go) == (False, True)

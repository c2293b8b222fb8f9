"""The relay with Python's smtplib: STARTTLS, AUTH, the sender check, limits, Bcc, dot-stuffing."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import logging
import smtplib

import pytest

from .conftest import SENDER, Relay, RelayFactory


def _body(content: bytes) -> bytes:
    return content.split(b"\r\n\r\n", 1)[1]


def _message(to: str = "bob@example.com", body: str = "hello\r\n", extra: str = "") -> bytes:
    return f"From: {SENDER}\r\nTo: {to}\r\nSubject: relay test\r\n{extra}\r\n{body}".encode()


async def _send(relay: Relay, rcpts: list[str], raw: bytes, sender: str = SENDER) -> dict[str, tuple[int, bytes]]:
    def go() -> dict[str, tuple[int, bytes]]:
        with relay.client() as client:
            return client.sendmail(sender, rcpts, raw)

    return await asyncio.to_thread(go)


async def test_good_credentials_deliver_through_the_outbox(relay: Relay) -> None:
    refused = await _send(relay, ["bob@example.com"], _message())
    assert refused == {}
    assert await relay.queued() == 1
    await relay.env.worker.drain()
    [received] = relay.upstream.handler.messages
    assert received.mail_from == SENDER and received.rcpt_tos == ("bob@example.com",)
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert parsed["Subject"] == "relay test" and _body(received.content) == b"hello\r\n"
    # Added when missing.
    assert parsed["Date"] and parsed["Message-ID"]
    assert relay.env.services.relay_metrics.messages_accepted == 1


async def test_wrong_password_is_535_and_counted(relay: Relay) -> None:
    with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
        await asyncio.to_thread(relay.client, password="not-the-password")
    assert caught.value.smtp_code == 535
    # smtplib tries each mechanism offered: PLAIN, then LOGIN.
    assert relay.env.services.relay_metrics.logins_failed == 2
    assert await relay.queued() == 0


async def test_mail_without_auth_is_530(relay: Relay) -> None:
    def go() -> tuple[int, bytes]:
        with relay.client(login=False) as client:
            return client.mail(SENDER)

    code, text = await asyncio.to_thread(go)
    assert code == 530, text


async def test_auth_is_not_offered_before_starttls(relay: Relay) -> None:
    def go() -> tuple[bool, bool, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as client:
            client.ehlo()
            offered_before = client.has_extn("auth")
            answer = client.docmd("AUTH", "PLAIN AGFwcDEAeA==")
            client.starttls(context=relay.context())
            client.ehlo()
            return offered_before, client.has_extn("auth"), answer

    before, after, answer = await asyncio.to_thread(go)
    assert not before and after
    assert answer[0] == 530  # require_starttls: nothing but EHLO/NOOP/QUIT/STARTTLS before TLS


async def test_forbidden_sender_is_550_before_data(relay: Relay) -> None:
    def go() -> tuple[int, bytes]:
        with relay.client() as client:
            return client.mail("ceo@example.com")

    code, text = await asyncio.to_thread(go)
    assert code == 550 and text.startswith(b"5.7.1") and b"may not send as <ceo@example.com>" in text
    assert relay.env.services.relay_metrics.senders_refused == 1


async def test_a_users_own_sender_list(make_relay: RelayFactory) -> None:
    relay: Relay = await make_relay(senders=["*@alerts.example.com"])
    raw = b"From: nagios@alerts.example.com\r\nTo: bob@example.com\r\n\r\nhi\r\n"
    assert await _send(relay, ["bob@example.com"], raw, sender="nagios@alerts.example.com") == {}
    assert await relay.queued() == 1


async def test_a_header_from_the_user_may_not_use_is_refused(relay: Relay) -> None:
    raw = b"From: ceo@example.com\r\nTo: bob@example.com\r\n\r\nhi\r\n"
    with pytest.raises(smtplib.SMTPDataError) as caught:
        await _send(relay, ["bob@example.com"], raw)
    assert caught.value.smtp_code == 550
    assert await relay.queued() == 0


async def test_oversize_is_552(make_relay: RelayFactory) -> None:
    relay: Relay = await make_relay(max_message_bytes=10_000)

    def go() -> tuple[bool, int]:
        with relay.client() as client:
            return client.has_extn("size"), int(client.esmtp_features["size"])

    assert await asyncio.to_thread(go) == (True, 10_000)
    raw = _message(body=("y" * 70 + "\r\n") * 200)
    with pytest.raises(smtplib.SMTPException) as caught:
        await _send(relay, ["bob@example.com"], raw)
    # smtplib sends SIZE= in MAIL when offered: the relay refuses there, before the data.
    assert "552" in str(caught.value)
    assert await relay.queued() == 0


async def test_too_many_recipients_is_452(make_relay: RelayFactory) -> None:
    relay: Relay = await make_relay(providers_toml="[providers.sandbox]\nmax_recipients = 3\n")
    rcpts = [f"r{i}@example.com" for i in range(5)]

    def go() -> list[tuple[int, bytes]]:
        with relay.client() as client:
            client.mail(SENDER)
            return [client.rcpt(r) for r in rcpts]

    answers = await asyncio.to_thread(go)
    assert [code for code, _ in answers] == [250, 250, 250, 452, 452]
    assert b"at most 3" in answers[3][1]


async def test_bcc_recipients_are_delivered_and_no_bcc_header(relay: Relay) -> None:
    raw = _message(extra="Bcc: hidden@example.com\r\n")
    await _send(relay, ["bob@example.com", "hidden@example.com", "secret@example.com"], raw)
    await relay.env.worker.drain()
    [received] = relay.upstream.handler.messages
    assert set(received.rcpt_tos) == {"bob@example.com", "hidden@example.com", "secret@example.com"}
    assert b"bcc" not in received.content.lower().split(b"\r\n\r\n")[0]
    assert b"hidden@example.com" not in received.content and b"secret@example.com" not in received.content


async def test_lines_starting_with_a_dot(relay: Relay) -> None:
    body = ".leading dot\r\n..two dots\r\n.\r\nend\r\n"
    await _send(relay, ["bob@example.com"], _message(body=body))  # smtplib stuffs, the relay unstuffs
    await relay.env.worker.drain()
    [received] = relay.upstream.handler.messages
    assert _body(received.content) == b".leading dot\r\n..two dots\r\n.\r\nend\r\n"


async def test_a_message_without_destination_fields(relay: Relay) -> None:
    raw = b"Subject: no To\r\n\r\nbody\r\n"  # a cron job's mail: no From, no To either
    await _send(relay, ["bob@example.com"], raw)
    await relay.env.worker.drain()
    [received] = relay.upstream.handler.messages
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert parsed["From"] == SENDER and received.rcpt_tos == ("bob@example.com",)


async def test_undisclosed_recipients(relay: Relay) -> None:
    raw = _message(to="undisclosed-recipients:;")
    await _send(relay, ["hidden@example.com"], raw)
    await relay.env.worker.drain()
    [received] = relay.upstream.handler.messages
    assert received.rcpt_tos == ("hidden@example.com",) and b"hidden@" not in received.content


async def test_smtputf8_and_8bitmime(relay: Relay) -> None:
    raw = "From: user@example.com\r\nTo: bob@example.com\r\nSubject: Grüße\r\n\r\nÄpfel\r\n".encode()

    def go() -> dict[str, tuple[int, bytes]]:
        with relay.client() as client:
            assert client.has_extn("smtputf8") and client.has_extn("8bitmime")
            return client.sendmail(SENDER, ["bob@example.com"], raw, mail_options=["BODY=8BITMIME"])

    assert await asyncio.to_thread(go) == {}
    await relay.env.worker.drain()
    [received] = relay.upstream.handler.messages
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert parsed["Subject"] == "Grüße" and _body(received.content) == "Äpfel\r\n".encode()


async def test_each_session_is_logged_without_the_password(relay: Relay, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await _send(relay, ["bob@example.com"], _message(extra="Message-ID: <logged@example.com>\r\n"))

    def guess() -> None:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as client:
            client.starttls(context=relay.context())
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login(relay.user, "a-wrong-guess")

    await asyncio.to_thread(guess)
    for _ in range(500):  # the session line is written when the connection is gone
        if not relay.server.open_sessions:
            break
        await asyncio.sleep(0.01)
    [view] = (await relay.env.services.outbox.list(statuses=[], limit=10, offset=0))[0]
    sessions = [r.getMessage() for r in caplog.records if r.getMessage().startswith("relay session")]
    assert any(f"user=app1 queued=1 [{view.id} <logged@example.com>]" in line for line in sessions), sessions
    assert any("user=- queued=0 failed_logins=2" in line for line in sessions), sessions
    everything = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert relay.password not in everything and "a-wrong-guess" not in everything
    # Nor in base64, as AUTH PLAIN sends it.
    assert base64.b64encode(f"\0app1\0{relay.password}".encode()).decode() not in everything


async def test_a_relay_user_sends_as_its_own_accounts_senders_only(relay: Relay) -> None:
    """A relay credential belongs to an account (issue 22): it sends through that account, as that account's
    senders, and not as another account's."""
    services, api = relay.env.services, relay.env.api
    server = (await api.get("/ddenterpriseapi/v2/email/server")).json()
    body = {k: server[k] for k in ("host", "port", "security", "authentication", "ca_file")}
    r = await api.put(
        "/ddenterpriseapi/v2/accounts/alerts/email/server",
        json={**body, "authentication": "password", "username": "alerts@example.com", "password": "upstream pw"},
    )
    assert r.status_code == 200, r.text
    alerts = await services.relay_users.add("alerts-app", account="alerts")
    as_alerts = Relay(**{**relay.__dict__, "user": "alerts-app", "password": alerts.password})

    def mail_from(client_relay: Relay, sender: str) -> tuple[int, bytes]:
        with client_relay.client() as client:
            return client.mail(sender)

    code, text = await asyncio.to_thread(mail_from, as_alerts, SENDER)  # default's mailbox
    assert code == 550 and b"account 'alerts'" in text, text
    code, _ = await asyncio.to_thread(mail_from, relay, "alerts@example.com")  # default's user, alerts' mailbox
    assert code == 550
    raw = b"From: alerts@example.com\r\nTo: bob@example.com\r\nSubject: disk\r\n\r\nfull\r\n"
    assert await _send(as_alerts, ["bob@example.com"], raw, sender="alerts@example.com") == {}
    items, _ = await services.outbox.list(statuses=[], limit=10, offset=0)
    assert [item.account_id for item in items] == ["alerts"]


async def test_recipients_are_limited_by_the_users_own_accounts_provider(make_relay: RelayFactory) -> None:
    """The default account's provider takes 3 recipients here; a user of an account on Google (100) is not
    held to the default account's limit."""
    relay: Relay = await make_relay(providers_toml="[providers.sandbox]\nmax_recipients = 3\n")
    services, api = relay.env.services, relay.env.api
    r = await api.put(
        "/ddenterpriseapi/v2/accounts/alerts/oauth/config",
        json={"provider": "google", "client_id": "alerts-client", "client_secret": "alerts-secret"},
    )
    assert r.status_code == 200, r.text
    server = (await api.get("/ddenterpriseapi/v2/email/server")).json()
    body = {k: server[k] for k in ("host", "port", "security", "ca_file")}
    r = await api.put(
        "/ddenterpriseapi/v2/accounts/alerts/email/server",
        json={**body, "authentication": "password", "username": "alerts@example.com", "password": "upstream pw"},
    )
    assert r.status_code == 200, r.text
    alerts = await services.relay_users.add("alerts-app", account="alerts")
    as_alerts = Relay(**{**relay.__dict__, "user": "alerts-app", "password": alerts.password})
    rcpts = [f"r{i}@example.com" for i in range(5)]

    def go(client_relay: Relay, sender: str) -> list[int]:
        with client_relay.client() as client:
            client.mail(sender)
            return [client.rcpt(r)[0] for r in rcpts]

    assert await asyncio.to_thread(go, relay, SENDER) == [250, 250, 250, 452, 452]
    assert await asyncio.to_thread(go, as_alerts, "alerts@example.com") == [250] * 5

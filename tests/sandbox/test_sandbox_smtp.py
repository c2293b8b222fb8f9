"""The sandbox SMTP server with real clients: STARTTLS, XOAUTH2, OAUTHBEARER, sender check, inbox."""

from __future__ import annotations

import asyncio
import base64
import json
import smtplib
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from mailgate.sandbox import Sandbox

from .helpers import Flow, SandboxFactory, smtp_connect

ALICE = "alice@sandbox.test"


def xoauth2(user: str, token: str) -> bytes:
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())


def oauthbearer(user: str, token: str, port: int) -> bytes:
    return base64.b64encode(f"n,a={user},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {token}\x01\x01".encode())


def access_token(sandbox: Sandbox, account: str = ALICE, **kwargs: str) -> str:
    return str(sandbox.mint_tokens(account, **kwargs)["access_token"])


def message(sender: str = ALICE, subject: str = "Hello from the tests") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "bob@example.com", subject
    msg.set_content("Body with <b>markup</b> that the inbox must escape.\n")
    return msg


async def test_xoauth2_with_a_long_token_then_send(sandbox: Sandbox) -> None:
    token = access_token(sandbox)
    assert len(token) > 2048  # longer than aiosmtpd's default AUTH line limit allows
    client = await smtp_connect(sandbox)
    try:
        assert "xoauth2" in client.server_auth_methods and "oauthbearer" in client.server_auth_methods
        assert "plain" not in client.server_auth_methods and "login" not in client.server_auth_methods
        response = await client.auth_xoauth2(ALICE, token)
        assert response.code == 235
        errors, reply = await client.send_message(message())
        assert errors == {} and reply.startswith("2.0.0")
    finally:
        await client.quit()
    [received] = sandbox.messages
    assert (received.mail_from, received.rcpt_tos, received.account) == (ALICE, ("bob@example.com",), ALICE)
    assert received.subject == "Hello from the tests"
    stats = sandbox.stats()
    assert (stats["smtp_auth_ok"], stats["smtp_auth_failed"], stats["smtp_messages"]) == (1, 0, 1)


async def test_xoauth2_after_a_bare_334(sandbox: Sandbox) -> None:
    client = await smtp_connect(sandbox)
    try:
        challenge = await client.execute_command(b"AUTH", b"XOAUTH2")
        assert (challenge.code, challenge.message) == (334, "")
        assert (await client.execute_command(xoauth2(ALICE, access_token(sandbox)))).code == 235
    finally:
        await client.quit()


async def test_token_from_the_consent_flow_works(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        tokens = await Flow(sandbox, http).tokens("erin@sandbox.test")
    client = await smtp_connect(sandbox)
    try:
        assert (await client.auth_xoauth2("erin@sandbox.test", tokens["access_token"])).code == 235
    finally:
        await client.quit()


async def test_expired_access_tokens_are_refused_microsoft_style(sandbox: Sandbox) -> None:
    token = access_token(sandbox)
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        assert (await http.post("/_control/expire-access-tokens")).json() == {"expired": 1}
    client = await smtp_connect(sandbox)
    try:
        response = await client.execute_command(b"AUTH", b"XOAUTH2", xoauth2(ALICE, token))
        assert response.code == 535
        assert response.message.startswith("5.7.3 Authentication unsuccessful")
        # aiosmtplib's own XOAUTH2 raises the usual error.
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await client.auth_xoauth2(ALICE, token)
    finally:
        await client.quit()
    assert sandbox.stats()["smtp_auth_failed"] == 2


async def test_gmail_style_failure_challenge(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox(smtp_failure_style="google")
    client = await smtp_connect(sandbox)
    try:
        challenge = await client.execute_command(b"AUTH", b"XOAUTH2", xoauth2(ALICE, "EwB-not-issued"))
        assert challenge.code == 334
        assert json.loads(base64.b64decode(challenge.message)) == {
            "status": "400",
            "schemes": "Bearer",
            "scope": "https://mail.google.com/",
        }
        final = await client.execute_command(b"")  # the empty line the client owes
        assert final.code == 535
        assert final.message.startswith("5.7.8 Username and Password not accepted")
        # The session is still usable: a good token now succeeds.
        assert (await client.auth_xoauth2(ALICE, access_token(sandbox))).code == 235
    finally:
        await client.quit()


async def test_gmail_style_failure_with_smtplib(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox(smtp_failure_style="google")
    context = sandbox.client_ssl_context()
    answers: list[str | None] = []

    def run() -> tuple[int, bytes]:
        # smtplib is blocking: run it in a thread, the sandbox lives on this loop.
        with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=30) as client:
            client.starttls(context=context)
            client.ehlo()

            def authobject(challenge: bytes | None = None) -> str:
                answers.append(None if challenge is None else challenge.decode())
                return "" if challenge is not None else f"user={ALICE}\x01auth=Bearer wrong\x01\x01"

            try:
                client.auth("XOAUTH2", authobject)
            except smtplib.SMTPAuthenticationError as exc:
                error = exc.smtp_error
                return exc.smtp_code, error if isinstance(error, bytes) else error.encode()
        return 0, b""

    code, text = await asyncio.to_thread(run)
    assert code == 535 and text.startswith(b"5.7.8")
    assert answers[0] is None and json.loads(str(answers[1]))["status"] == "400"


async def test_oauthbearer_success_and_failure(sandbox: Sandbox) -> None:
    client = await smtp_connect(sandbox)
    try:
        wrong = await client.execute_command(b"AUTH", b"OAUTHBEARER", oauthbearer(ALICE, "bad", sandbox.smtp_port))
        assert wrong.code == 334
        assert json.loads(base64.b64decode(wrong.message))["status"] == "invalid_token"
        final = await client.execute_command(base64.b64encode(b"\x01"))  # RFC 7628 s.3.2.3
        assert final.code == 535
        good = oauthbearer(ALICE, access_token(sandbox), sandbox.smtp_port)
        assert (await client.execute_command(b"AUTH", b"OAUTHBEARER", good)).code == 235
    finally:
        await client.quit()


async def test_starttls_is_required_before_auth(sandbox: Sandbox) -> None:
    client = await smtp_connect(sandbox, start_tls=False)
    try:
        assert client.supports_extension("starttls")
        assert not client.supports_extension("auth")  # not offered in clear text
        refused = await client.execute_command(b"AUTH", b"XOAUTH2", xoauth2(ALICE, access_token(sandbox)))
        assert refused.code == 530
        assert (await client.execute_command(b"MAIL", b"FROM:<" + ALICE.encode() + b">")).code == 530
        await client.starttls()
        await client.ehlo()
        assert client.supports_extension("auth")
        assert (await client.auth_xoauth2(ALICE, access_token(sandbox))).code == 235
    finally:
        await client.quit()
    assert sandbox.stats()["smtp_auth_ok"] == 1


async def test_mail_needs_auth(sandbox: Sandbox) -> None:
    client = await smtp_connect(sandbox)
    try:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await client.sendmail(ALICE, ["bob@example.com"], b"Subject: x\r\n\r\nx\r\n")
        assert caught.value.code == 530
    finally:
        await client.quit()


async def test_user_must_match_the_consenting_account(sandbox: Sandbox) -> None:
    client = await smtp_connect(sandbox)
    try:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await client.auth_xoauth2("mallory@sandbox.test", access_token(sandbox, ALICE))
    finally:
        await client.quit()


async def test_token_without_smtp_scope_is_refused(sandbox: Sandbox) -> None:
    token = access_token(sandbox, scope="https://graph.microsoft.com/Mail.Send openid email")
    client = await smtp_connect(sandbox)
    try:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await client.auth_xoauth2(ALICE, token)
    finally:
        await client.quit()


async def test_wrong_sender_is_refused(sandbox: Sandbox) -> None:
    client = await smtp_connect(sandbox)
    try:
        await client.auth_xoauth2(ALICE, access_token(sandbox))
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await client.send_message(message(sender="ceo@sandbox.test"))
        assert caught.value.code == 550
        assert "5.7.60" in caught.value.message
    finally:
        await client.quit()
    assert sandbox.messages == []
    assert sandbox.stats()["smtp_sender_refused"] == 1


async def test_inbox_lists_and_shows_a_received_message(sandbox: Sandbox) -> None:
    client = await smtp_connect(sandbox)
    try:
        await client.auth_xoauth2(ALICE, access_token(sandbox))
        await client.send_message(message(subject="Quarterly <report>"))
    finally:
        await client.quit()
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        listing = await http.get("/inbox")
        assert listing.status_code == 200
        assert "Quarterly &lt;report&gt;" in listing.text and ALICE in listing.text
        assert 'href="/inbox/1"' in listing.text
        detail = await http.get("/inbox/1")
        assert "&lt;b&gt;markup&lt;/b&gt;" in detail.text and "<b>markup" not in detail.text
        [item] = (await http.get("/inbox.json")).json()
        assert item["mail_from"] == ALICE and item["rcpt_tos"] == ["bob@example.com"]
        assert item["subject"] == "Quarterly <report>"
        assert "Subject: Quarterly <report>" in item["raw"]
        assert (await http.get("/inbox/99")).status_code == 404
        assert (await http.post("/_control/clear-inbox")).json() == {"cleared": 1}
        assert (await http.get("/inbox.json")).json() == []


async def test_messages_are_written_to_the_state_dir(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    sandbox = await make_sandbox(state_dir=tmp_path)
    client = await smtp_connect(sandbox)
    try:
        await client.auth_xoauth2(ALICE, access_token(sandbox))
        await client.send_message(message())
    finally:
        await client.quit()
    [eml] = tmp_path.glob("*.eml")
    assert b"Subject: Hello from the tests" in eml.read_bytes()


async def test_password_users_can_use_plain(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox(smtp_password_users={"legacy@sandbox.test": "pw"})
    client = await smtp_connect(sandbox)
    try:
        assert "plain" in client.server_auth_methods
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await client.login("legacy@sandbox.test", "wrong")
        assert (await client.login("legacy@sandbox.test", "pw")).code == 235
        await client.send_message(message(sender="legacy@sandbox.test"))
    finally:
        await client.quit()
    assert [m.account for m in sandbox.messages] == ["legacy@sandbox.test"]


async def test_stop_closes_open_smtp_sessions(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox()
    client = await smtp_connect(sandbox)
    await client.auth_xoauth2(ALICE, access_token(sandbox))
    await sandbox.stop()  # must not hang on the open session
    with pytest.raises(aiosmtplib.SMTPException):
        await client.noop()
    client.close()


class PipeliningClient:
    """A client that pipelines (RFC 2920), on asyncio streams: mailgate's own transport does not."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def authenticated(cls, sandbox: Sandbox) -> PipeliningClient:
        client = cls(*await asyncio.open_connection("127.0.0.1", sandbox.smtp_port))
        assert (await client.reply())[0] == 220
        assert [code for code, _ in await client.exchange(b"EHLO client.test\r\n", b"STARTTLS\r\n")] == [250, 220]
        await client.writer.start_tls(sandbox.client_ssl_context(), server_hostname="127.0.0.1")
        auth = b"AUTH XOAUTH2 " + xoauth2(ALICE, access_token(sandbox)) + b"\r\n"
        assert [code for code, _ in await client.exchange(b"EHLO client.test\r\n", auth)] == [250, 235]
        return client

    async def reply(self) -> tuple[int, str]:
        lines = []
        while (line := await asyncio.wait_for(self.reader.readline(), 10))[3:4] == b"-":
            lines.append(line)
        lines.append(line)
        return int(line[:3]), b"".join(lines).decode()

    async def exchange(self, *commands: bytes) -> list[tuple[int, str]]:
        """Write the commands in one write, then read one reply per command."""
        self.writer.write(b"".join(commands))
        return [await self.reply() for _ in commands]


async def test_pipelined_commands_are_answered_in_order(sandbox: Sandbox) -> None:
    """RFC 2920: a client that pipelines (as many submission clients do) gets one reply per command, in order,
    and an error reply does not upset the ones after it."""
    client = await PipeliningClient.authenticated(sandbox)
    envelope = [f"MAIL FROM:<{ALICE}>\r\n".encode(), b"RCPT TO:<bob@example.com>\r\n", b"RCPT TO:<eve@example.com>\r\n"]
    replies = await client.exchange(*envelope, b"DATA\r\n")
    assert [code for code, _ in replies] == [250, 250, 250, 354]
    # The end of a message with the next one's commands.
    body = b"From: alice@sandbox.test\r\nSubject: pipelined\r\n\r\nHello.\r\n"
    replies = await client.exchange(body + b".\r\n", *envelope, b"DATA\r\n")
    assert [code for code, _ in replies] == [250, 250, 250, 250, 354]
    assert [code for code, _ in await client.exchange(body + b".\r\n")] == [250]
    replies = await client.exchange(b"MAIL FROM:<mallory@sandbox.test>\r\n", b"RSET\r\n")
    assert [code for code, _ in replies] == [550, 250]
    assert [code for code, _ in await client.exchange(b"QUIT\r\n")] == [221]
    client.writer.close()
    assert [m.subject for m in sandbox.messages] == ["pipelined", "pipelined"]

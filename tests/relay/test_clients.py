"""The relay with real SMTP clients nobody here wrote: swaks and msmtp (Debian packages), over STARTTLS,
each verifying the relay's generated certificate as an administrator would configure it."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
from pathlib import Path

from .conftest import SENDER, Relay, need_tool


async def _run(*argv: str, stdin: bytes = b"") -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace")


async def _swaks(relay: Relay, *extra: str, password: str | None = None, sender: str = SENDER) -> tuple[int, str]:
    swaks = need_tool("swaks")
    return await _run(
        swaks, "--server", f"127.0.0.1:{relay.port}", "--tls", "--tls-verify",
        "--tls-ca-path", str(relay.certificate.cert_path),
        "--auth", "PLAIN", "--auth-user", relay.user, "--auth-password", password or relay.password,
        "--from", sender, "--to", "bob@example.com", "--hide-informational", *extra,
    )  # fmt: skip


async def test_swaks_sends_a_message_with_dot_lines(relay: Relay) -> None:
    body = "first\n.dot at the start\n..two dots\nlast"
    code, out = await _swaks(relay, "--header", "Subject: from swaks", "--body", body)
    assert code == 0, out
    await relay.env.worker.drain()
    [received] = relay.upstream.handler.messages
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert parsed["Subject"] == "from swaks"
    assert b"\r\n.dot at the start\r\n..two dots\r\n" in received.content


async def test_swaks_wrong_password(relay: Relay) -> None:
    code, out = await _swaks(relay, password="wrong-password")
    assert code != 0 and "535" in out, out
    assert await relay.queued() == 0


async def test_swaks_without_auth_is_530(relay: Relay) -> None:
    swaks = need_tool("swaks")
    code, out = await _run(
        swaks, "--server", f"127.0.0.1:{relay.port}", "--tls", "--from", SENDER, "--to", "bob@example.com",
    )  # fmt: skip
    assert code != 0 and "530" in out, out
    assert await relay.queued() == 0


async def test_swaks_auth_before_starttls_is_not_offered(relay: Relay) -> None:
    swaks = need_tool("swaks")
    code, out = await _run(
        swaks, "--server", f"127.0.0.1:{relay.port}", "--auth", "PLAIN", "--auth-user", relay.user,
        "--auth-password", relay.password, "--from", SENDER, "--to", "bob@example.com",
    )  # fmt: skip
    assert code != 0, out
    assert "Host did not advertise authentication" in out, out


async def test_swaks_forbidden_sender(relay: Relay) -> None:
    code, out = await _swaks(relay, sender="ceo@example.com")
    assert code != 0 and "550 5.7.1" in out, out
    assert await relay.queued() == 0


def _msmtp_config(relay: Relay, tmp_path: Path, *, password: str, sender: str = SENDER) -> Path:
    config = tmp_path / "msmtprc"
    config.write_text(
        "account relay\n"
        "host 127.0.0.1\n"
        f"port {relay.port}\n"
        "tls on\n"
        "tls_starttls on\n"
        # Trusted by fingerprint, as the Relay page and `mailgate serve` show it.
        f"tls_fingerprint {relay.certificate.fingerprint}\n"
        "auth login\n"
        f"user {relay.user}\n"
        f"password {password}\n"
        f"from {sender}\n"
    )
    os.chmod(config, 0o600)  # msmtp refuses a password in a file others can read
    return config


async def test_msmtp_sends_with_auth_login_and_bcc(relay: Relay, tmp_path: Path) -> None:
    msmtp = need_tool("msmtp")
    config = _msmtp_config(relay, tmp_path, password=relay.password)
    message = f"From: {SENDER}\nTo: bob@example.com\nBcc: hidden@example.com\nSubject: from msmtp\n\n.hi\n".encode()
    code, out = await _run(msmtp, f"--file={config}", "-a", "relay", "-t", stdin=message)
    assert code == 0, out
    await relay.env.worker.drain()
    [received] = relay.upstream.handler.messages
    assert set(received.rcpt_tos) == {"bob@example.com", "hidden@example.com"}
    assert b"hidden@example.com" not in received.content
    assert received.content.endswith(b"\r\n\r\n.hi\r\n")


async def test_msmtp_wrong_password(relay: Relay, tmp_path: Path) -> None:
    msmtp = need_tool("msmtp")
    config = _msmtp_config(relay, tmp_path, password="wrong-password")
    code, out = await _run(msmtp, f"--file={config}", "-a", "relay", "bob@example.com", stdin=b"Subject: x\n\nx\n")
    assert code != 0 and "535" in out, out
    assert await relay.queued() == 0


async def test_msmtp_forbidden_sender(relay: Relay, tmp_path: Path) -> None:
    msmtp = need_tool("msmtp")
    config = _msmtp_config(relay, tmp_path, password=relay.password, sender="ceo@example.com")
    code, out = await _run(msmtp, f"--file={config}", "-a", "relay", "bob@example.com", stdin=b"Subject: x\n\nx\n")
    assert code != 0 and "5.7.1" in out, out
    assert await relay.queued() == 0

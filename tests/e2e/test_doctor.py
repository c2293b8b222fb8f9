"""``mailgate doctor`` run for real as a subprocess against a data dir, with and without ``mailgate serve``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx
import pytest

from ..conftest import ADMIN_PASSWORD, basic_auth, throwaway_postgres_database
from .harness import API, Harness
from .test_cli import _free_port, _healthz_once_listening, _read_until, _start, _stop

ALICE = "alice@sandbox.test"
CHECKS = [
    "files",
    "configuration",
    "redirect URI",
    "sender allowed",
    "token refresh",
    "SMTP connect",
    "TLS",
    "TLS certificate",
    "EHLO",
    "AUTH",
    "sender accepted",
]


def _env(h: Harness) -> dict[str, str]:
    settings = h.services.settings
    assert settings.providers_file is not None
    return {
        **os.environ,
        "MAILGATE_DATA_DIR": str(settings.data_dir),
        "MAILGATE_PROVIDERS_FILE": str(settings.providers_file),
        "NO_COLOR": "1",
    }


async def doctor(h: Harness, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailgate",
        "doctor",
        *args,
        env=env or _env(h),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,  # log lines (a warning about a dead grant) stay out of the JSON
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def doctor_json(h: Harness, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    code, out = await doctor(h, "--json", *args)
    checks = json.loads(out)
    assert all(set(c) == {"check", "ok", "detail", "fix", "account"} for c in checks), out
    return code, {c["check"]: c for c in checks}


async def ready(h: Harness) -> None:
    await h.configure("microsoft")
    assert (await h.authorize(account=ALICE)).status_code == 200


async def test_all_checks_pass_with_a_real_refresh_and_nothing_sent(harness: Harness) -> None:
    await ready(harness)
    refreshes = harness.sandbox.stats()["token_requests"]["refresh_token"]
    code, out = await doctor(harness, "--json")
    assert code == 0, out
    checks = json.loads(out)
    assert [c["check"] for c in checks] == CHECKS
    assert all(c["ok"] and c["fix"] == "" for c in checks), out
    assert {c["account"] for c in checks[1:]} == {"default"}
    assert harness.sandbox.stats()["token_requests"]["refresh_token"] == refreshes + 1  # a real refresh
    by_name = {c["check"]: c for c in checks}
    assert f"MAIL FROM:<{ALICE}> accepted (nothing was sent)" == by_name["sender accepted"]["detail"]
    assert "days left" in by_name["TLS certificate"]["detail"]
    assert harness.sandbox.messages == []
    # The same in text.
    code, text = await doctor(harness, "--account", "default")
    assert code == 0 and "account default" in text
    for name in CHECKS:
        assert f"PASS {name}" in text, text


async def test_smtp_auth_disabled_fails_auth_with_the_command_to_run(harness: Harness) -> None:
    await ready(harness)
    harness.sandbox.smtp_faults.set(ALICE, "smtp_auth_disabled")
    code, checks = await doctor_json(harness)
    assert code == 1
    auth = checks["AUTH"]
    assert auth["ok"] is False and "535 5.7.139 Authentication unsuccessful" in auth["detail"]
    assert "Likely cause: SMTP AUTH (authenticated client submission) is disabled" in auth["detail"]
    assert "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false" in auth["fix"]
    assert checks["token refresh"]["ok"] and checks["SMTP connect"]["ok"] and checks["TLS"]["ok"]
    assert "sender accepted" not in checks  # AUTH failed: the connection stops there
    code, text = await doctor(harness)
    assert code == 1
    assert "FAIL AUTH" in text and "what to do: An Exchange administrator must enable it: Set-CASMailbox" in text


async def test_send_as_denied_fails_the_sender_check(harness: Harness) -> None:
    await ready(harness)
    harness.sandbox.smtp_faults.set(ALICE, "send_as_denied")
    code, checks = await doctor_json(harness)
    assert code == 1 and checks["AUTH"]["ok"]
    sender = checks["sender accepted"]
    assert sender["ok"] is False and "550 5.7.60 SMTP; Client does not have permissions" in sender["detail"]
    assert "Add-RecipientPermission -AccessRights SendAs" in sender["fix"]


async def test_a_revoked_grant_fails_the_token_refresh(harness: Harness) -> None:
    await ready(harness)
    harness.sandbox.revoke_all()
    code, checks = await doctor_json(harness)
    assert code == 1
    refresh = checks["token refresh"]
    assert refresh["ok"] is False and "invalid_grant (AADSTS70008" in refresh["detail"]
    assert "Likely cause:" in refresh["detail"] and "authorize again" in refresh["fix"]
    # Marked in the database: the next run says re-authorization is needed without asking the provider.
    code, checks = await doctor_json(harness)
    assert code == 1 and checks["token refresh"]["detail"].startswith("Re-authorization needed: ")


async def test_a_certificate_close_to_expiry_is_a_warning_that_fails(make_harness: Any) -> None:
    h: Harness = await make_harness(smtp_certificate_days=5)
    await ready(h)
    code, checks = await doctor_json(h)
    assert code == 1
    cert = checks["TLS certificate"]
    assert cert["ok"] is False and cert["detail"].startswith("Warning: the server's certificate expires in 4 day(s)")
    assert "renew" in cert["fix"]
    assert checks["AUTH"]["ok"] and checks["sender accepted"]["ok"]  # the rest still checked


async def test_loose_file_modes_and_an_inconsistent_configuration(harness: Harness) -> None:
    await ready(harness)
    data_dir = harness.services.settings.data_dir
    data_dir.chmod(0o755)
    env = {**_env(harness), "MAILGATE_BASE_URL": "https://mail.example.com"}
    code, out = await doctor(harness, "--json", env=env)
    checks = {c["check"]: c for c in json.loads(out)}
    assert code == 1
    assert checks["files"]["ok"] is False and "is 0755 (other users can read it), not 0700" in checks["files"]["detail"]
    redirect = checks["redirect URI"]
    assert redirect["ok"] is False
    assert "https://mail.example.com/ddenterpriseapi/v2/oauth/redirect" in redirect["fix"]
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"  # opening the data dir tightened it, as serve does


async def test_an_unknown_account_and_a_missing_data_dir(harness: Harness, tmp_path: Any) -> None:
    code, checks = await doctor_json(harness, "--account", "nobody")
    assert code == 1 and checks["account"]["detail"] == "There is no account 'nobody'."
    env = {**_env(harness), "MAILGATE_DATA_DIR": str(tmp_path / "absent")}
    code, out = await doctor(harness, "--json", env=env)
    assert code == 1 and json.loads(out)[0]["detail"] == f"The data dir {tmp_path / 'absent'} does not exist."
    assert not (tmp_path / "absent").exists()  # nothing was created


async def test_doctor_next_to_a_running_serve_leaves_it_working(harness: Harness) -> None:
    await ready(harness)
    await harness.services.aclose()  # the only process on the database is now `mailgate serve`
    port = _free_port()
    env = {**_env(harness), "MAILGATE_ADMIN_PASSWORD": ADMIN_PASSWORD}
    serve = await _start("serve", "--port", str(port), env=env)
    try:
        await _read_until(serve, "Authorized redirect URI")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers=basic_auth(), timeout=30) as api:
            assert (await _healthz_once_listening(api)).status_code == 200
            code, out = await doctor(harness, "--json", env=env)
            assert code == 0, out
            # The server still sends: its stored access token is refused, so it refreshes with the refresh token
            # the doctor's refresh rotated (Microsoft rotates; the sandbox kills the old one at once).
            harness.sandbox.expire_access_tokens()
            r = await api.post(f"{API}/email/messages", json={"to": ["bob@example.com"], "subject": "s", "text": "t"})
            assert r.status_code == 202, r.text
            for _ in range(200):
                if harness.sandbox.messages:
                    break
                await asyncio.sleep(0.1)
            assert [m.rcpt_tos for m in harness.sandbox.messages] == [("bob@example.com",)]
            assert (await api.get(f"{API}/oauth/config")).json()["token_status"] == "valid"
    finally:
        await _stop(serve)
    assert serve.returncode == 0


@pytest.mark.postgres
async def test_doctor_on_postgresql_next_to_open_services(make_harness: Any) -> None:
    async with throwaway_postgres_database() as url:
        h: Harness = await make_harness(database_url=url)
        await ready(h)  # the harness's services stay open on the database, as a server's would
        env = {**_env(h), "MAILGATE_DATABASE_URL": url}
        code, out = await doctor(h, "--json", env=env)
        assert code == 0, out
        assert [c["check"] for c in json.loads(out)] == CHECKS
        assert h.sandbox.stats()["token_requests"]["refresh_token"] == 1
        # The services still get tokens: the doctor's rotated refresh token is the one stored.
        h.sandbox.expire_access_tokens()
        h.clock.advance(3600)
        assert await h.services.tokens.access_token()
        assert (await h.view())["token_status"] == "valid"
        await h.services.aclose()  # before the database is dropped


@pytest.mark.parametrize(
    ("fault", "reply", "fix"),
    [
        ("login_throttled", "454 4.7.0 Too many login attempts", "mailgate retries later"),
        ("too_many_connections", "432 4.3.2 Concurrent connections limit exceeded", "max_connections"),
        ("", "535 5.7.3 Authentication unsuccessful", "Authorize again signed in as the Username's mailbox"),
    ],
)
async def test_other_auth_refusals_name_their_fix(harness: Harness, fault: str, reply: str, fix: str) -> None:
    await ready(harness)
    if fault:
        harness.sandbox.smtp_faults.set("*", fault)  # type: ignore[arg-type]
    else:  # a token of alice's presented for bob's mailbox: the wrong account consented
        r = await harness.api.put(f"{API}/email/server", json={"username": "bob@sandbox.test"})
        assert r.status_code == 200, r.text
    code, checks = await doctor_json(harness)
    assert code == 1
    auth = checks["AUTH"]
    assert auth["ok"] is False and reply in auth["detail"] and "Likely cause: " in auth["detail"]
    assert fix in auth["fix"]


async def test_an_http_delivery_is_checked_by_its_token_and_permission(harness: Harness) -> None:
    """Issue 24: for Graph (or the Gmail API) doctor checks the token and the send permission, not SMTP."""
    await harness.configure("microsoft")
    r = await harness.api.put(f"{API}/email/server", json={"delivery": "graph"})
    assert r.status_code == 200, r.text
    assert (await harness.authorize(account=ALICE)).status_code == 200
    code, checks = await doctor_json(harness)
    assert code == 0, checks
    assert checks["graph token"]["ok"] and checks["graph permission"]["ok"], checks
    assert "SMTP connect" not in checks and "AUTH" not in checks
    harness.sandbox.mail_api.permission_denied = True  # the admin removed Mail.Send from the app registration
    code, checks = await doctor_json(harness)
    assert code == 1 and not checks["graph permission"]["ok"], checks
    assert "Mail.Send" in checks["graph permission"]["fix"], checks
    assert harness.sandbox.messages == []

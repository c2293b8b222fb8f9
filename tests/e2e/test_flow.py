"""Issue 2 end to end: configure, consent at the (sandbox) provider, store the refresh token, send with XOAUTH2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailgate.errors import ConfigurationError, ReauthorizationRequiredError, TokenEndpointUnavailableError
from mailgate.smtp import build_message
from mailgate.store.repository import get_account

from .harness import API, Harness


def _message(h: Harness, to: str = "bob@example.com", subject: str = "hello") -> object:
    return build_message(sender="alice@sandbox.test", to=[to], subject=subject, text="body\n")


async def test_microsoft_like_flow_then_send(harness: Harness) -> None:
    h = harness
    await h.configure("microsoft", tenant="contoso.onmicrosoft.com")
    before = await h.view()
    assert before["refresh_token_set"] is False and before["token_status"] == "not_authorized"
    start = await h.api.get(f"{API}/oauth/authorize")
    location = start.headers["location"]
    assert location.startswith(f"{h.sandbox.base_url}/contoso.onmicrosoft.com/oauth2/v2.0/authorize?")
    assert "code_challenge_method=S256" in location and "offline_access" in location
    assert "mailgate_oauth_flow" in start.headers["set-cookie"] and "HttpOnly" in start.headers["set-cookie"]

    r = await h.authorize()
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "account": "alice@sandbox.test", "provider": "microsoft", "refresh_token_set": True}
    view = await h.view()
    assert view["refresh_token_set"] is True and view["token_status"] == "valid"
    assert view["account"] == "alice@sandbox.test"
    server = (await h.api.get(f"{API}/email/server")).json()
    assert server["username"] == server["sender"] == "alice@sandbox.test"  # filled by the consent

    test = await h.api.post(f"{API}/email/server/test", json={"send_to": "bob@example.com"})
    assert test.status_code == 200, test.text
    steps = test.json()["steps"]
    names = [s["name"] for s in steps]
    assert names[0] == "connect" and names[-2:] == ["auth", "send"] and {"tls", "ehlo"} <= set(names), steps
    assert all(s["ok"] for s in steps) and test.json()["ok"] is True
    [received] = h.sandbox.messages
    assert list(received.rcpt_tos) == ["bob@example.com"]
    stats = h.sandbox.stats()
    assert stats["token_requests"].get("authorization_code") == 1
    assert stats["token_requests"].get("refresh_token", 0) == 0  # the token of the code exchange was used


async def test_html_callback_page_reports_success(harness: Harness) -> None:
    await harness.configure("microsoft")
    back = await harness.consent()
    page = await harness.api.get(back)
    assert page.status_code == 200 and "Authorization complete" in page.text and "alice@sandbox.test" in page.text


async def test_google_like_flow_error_challenge_forces_one_refresh(make_harness: object) -> None:
    h: Harness = await make_harness(rotate_refresh_tokens=False, smtp_failure_style="google")  # type: ignore[operator]
    await h.configure("google")
    start = await h.api.get(f"{API}/oauth/authorize")
    assert "access_type=offline" in start.headers["location"] and "prompt=consent" in start.headers["location"]
    assert (await h.authorize()).status_code == 200
    rt_before = await _refresh_token(h)
    await h.services.mailer.send(_message(h))  # type: ignore[arg-type]
    # The provider revokes the access token behind our back: the server's 334 error challenge makes mailgate
    # refresh once and retry on its own.
    h.sandbox.expire_access_tokens()
    result = await h.services.mailer.send(_message(h, subject="second"))  # type: ignore[arg-type]
    assert result.accepted == ("bob@example.com",)
    stats = h.sandbox.stats()
    assert stats["token_requests"]["refresh_token"] == 1
    assert stats["smtp_auth_failed"] == 1
    assert len(h.sandbox.messages) == 2
    assert await _refresh_token(h) == rt_before  # Google sends no new refresh token: the stored one is kept


async def _refresh_token(h: Harness) -> str:
    async with h.services.db.session() as session:
        row = await get_account(session)
        assert row is not None
        return h.services.box.decrypt(row.refresh_token_enc)


async def test_early_refresh_rotation_and_one_refresh_under_concurrency(make_harness: object) -> None:
    h: Harness = await make_harness(access_token_lifetime=900)  # type: ignore[operator]
    await h.configure("microsoft")
    await h.authorize()
    rt0 = await _refresh_token(h)
    tokens = h.services.tokens
    first = await tokens.access_token()
    h.clock.advance(500)  # 400 s left: more than the 5-minute margin
    assert await tokens.access_token() == first
    h.clock.advance(150)  # 250 s left: inside the margin -> refreshed early, once, by 50 concurrent senders
    results = await asyncio.gather(*(tokens.access_token() for _ in range(50)))
    assert len(set(results)) == 1 and results[0] != first
    assert h.sandbox.stats()["token_requests"]["refresh_token"] == 1
    rt1 = await _refresh_token(h)
    assert rt1 != rt0  # the rotated refresh token was stored
    # ... and it is the one that works: the next refresh succeeds (the sandbox kills rotated-out tokens).
    h.clock.advance(900)
    assert await tokens.access_token() not in (first, results[0])
    view = await h.view()
    assert view["token_status"] == "valid" and view["last_refreshed_at"]


async def test_a_second_process_uses_the_token_the_first_refreshed(make_harness: object, tmp_path: Path) -> None:
    from mailgate.app import build_services

    h: Harness = await make_harness()  # type: ignore[operator]
    await h.configure("microsoft")
    await h.authorize()
    h.clock.advance(3600)
    token = await h.services.tokens.access_token()
    other = await build_services(h.services.settings, clock=h.clock)
    try:
        assert await other.tokens.access_token() == token  # read from the database, no second refresh
    finally:
        await other.aclose()
    assert h.sandbox.stats()["token_requests"]["refresh_token"] == 1


async def test_revoked_refresh_token_needs_reauthorization_then_recovers(harness: Harness) -> None:
    h = harness
    await h.configure("microsoft")
    await h.authorize()
    h.sandbox.revoke_all()
    h.clock.advance(3600)
    with pytest.raises(ReauthorizationRequiredError) as info:
        await h.services.tokens.access_token()
    assert "authorize" in info.value.hint.lower()
    view = await h.view()
    assert view["token_status"] == "reauthorization_required"
    assert "invalid_grant" in view["token_status_reason"]
    assert view["refresh_token_set"] is True  # the record is kept for diagnosis
    # No more token requests while consent is missing.
    calls = h.sandbox.stats()["token_requests"]["refresh_token"]
    with pytest.raises(ReauthorizationRequiredError):
        await h.services.tokens.access_token()
    assert h.sandbox.stats()["token_requests"]["refresh_token"] == calls
    # Re-authorize: valid again, and mail goes out.
    assert (await h.authorize()).status_code == 200
    assert (await h.view())["token_status"] == "valid"
    await h.services.mailer.send(_message(h))  # type: ignore[arg-type]
    assert len(h.sandbox.messages) == 1


async def test_token_endpoint_down_is_transient_and_keeps_the_consent(harness: Harness) -> None:
    h = harness
    await h.configure("microsoft")
    await h.authorize()
    h.sandbox.set_token_endpoint_available(False)
    h.clock.advance(3600)
    with pytest.raises(TokenEndpointUnavailableError) as info:
        await h.services.tokens.access_token()
    assert info.value.retryable
    assert (await h.view())["token_status"] == "valid"
    h.sandbox.set_token_endpoint_available(True)
    assert await h.services.tokens.access_token()


async def test_denied_consent_changes_nothing(harness: Harness) -> None:
    await harness.configure("microsoft")
    back = await harness.consent(accept=False)
    r = await harness.api.get(back)
    assert r.status_code == 400
    assert "access_denied" in r.text and "denied" in r.text.lower() and "Nothing was changed" in r.text
    view = await harness.view()
    assert view["refresh_token_set"] is False and view["token_status"] == "not_authorized"


async def test_wrong_client_secret_is_explained_and_nothing_stored(harness: Harness) -> None:
    await harness.configure("microsoft", secret="the-secret-id-not-the-value")
    r = await harness.authorize()
    assert r.status_code == 400
    body = r.json()
    assert "AADSTS7000215" in body["provider_error"] and "Value" in body["hint"]
    assert (await harness.view())["refresh_token_set"] is False


async def test_state_is_one_time_bound_to_the_browser_and_required(harness: Harness) -> None:
    h = harness
    await h.configure("microsoft")
    back = await h.consent()
    # Another browser (no flow cookie) is refused, without spending the state ...
    import httpx

    from mailgate.web import create_app

    stranger = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(h.services)), base_url="http://localhost:8080"
    )
    async with stranger:
        r = await stranger.get(back, headers={"Accept": "application/json"})
        assert r.status_code == 400 and "another browser" in r.json()["message"]
        assert (
            await stranger.get(f"{API}/oauth/redirect?code=x", headers={"Accept": "application/json"})
        ).status_code == 400
        unknown = await stranger.get(
            f"{API}/oauth/redirect?code=x&state=forged", headers={"Accept": "application/json"}
        )
        assert unknown.status_code == 400 and "does not match" in unknown.json()["message"]
    # ... so the right browser can still complete it, once.
    assert (await h.api.get(back, headers={"Accept": "application/json"})).status_code == 200
    again = await h.api.get(back, headers={"Accept": "application/json"})
    assert again.status_code == 400 and "already used" in again.json()["message"]
    assert h.sandbox.stats()["token_requests"]["authorization_code"] == 1


async def test_changing_the_client_forgets_the_old_consent(harness: Harness) -> None:
    await harness.configure("microsoft")
    await harness.authorize()
    r = await harness.api.put(
        f"{API}/oauth/config",
        json={"provider": "microsoft", "tenant": "common", "client_id": "another-client", "client_secret": "x"},
    )
    assert r.json()["refresh_token_set"] is False
    with pytest.raises(ConfigurationError, match="not authorized"):
        await harness.services.tokens.access_token()


async def test_disconnect_revokes_and_deletes(harness: Harness) -> None:
    await harness.configure("microsoft")
    await harness.authorize()
    r = await harness.api.post(f"{API}/oauth/disconnect")
    assert r.status_code == 200 and r.json()["revoked_at_provider"] is True
    assert r.json()["refresh_token_set"] is False
    assert harness.sandbox.stats()["revocations"] == 1


async def test_no_secret_in_the_database_files(harness: Harness) -> None:
    h = harness
    await h.configure("microsoft", secret="sandbox-secret")
    await h.authorize()
    access = await h.services.tokens.access_token()
    refresh = await _refresh_token(h)
    await h.api.put(
        f"{API}/email/server",
        json={
            "host": "smtp.example.com",
            "port": 587,
            "security": "starttls",
            "authentication": "password",
            "username": "u@example.com",
            "password": "smtp-pa55word",
        },
    )
    data = b"".join(p.read_bytes() for p in h.services.settings.data_dir.glob("mailgate.db*"))
    assert len(data) > 10_000
    for secret in ("sandbox-secret", access, refresh, "smtp-pa55word"):
        assert secret.encode() not in data


async def test_send_with_attachment_via_cli(harness: Harness, tmp_path: Path) -> None:
    import os
    import sys

    await harness.configure("microsoft")
    await harness.authorize()
    attachment = tmp_path / "report.csv"
    attachment.write_text("a,b\n1,2\n")
    env = {
        **os.environ,
        "MAILGATE_DATA_DIR": str(harness.services.settings.data_dir),
        "MAILGATE_PROVIDERS_FILE": str(harness.services.settings.providers_file),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailgate",
        "send",
        "--to",
        "carol@example.com",
        "--subject",
        "Report",
        "--body",
        "See attached.",
        "--attach",
        str(attachment),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "Sent <" in out.decode() and "carol@example.com" in out.decode()
    [received] = harness.sandbox.messages
    assert b"report.csv" in received.raw and b"Subject: Report" in received.raw

"""Each failure an administrator meets, driven through the sandbox: the API says the cause and the fix, with
the server's or provider's own words kept (mailgate.advice)."""

from __future__ import annotations

import html
from typing import Any

import httpx
import pytest

from mailgate.outbox import Worker
from mailgate.web import create_app

from ..web.conftest import EMAIL, form_token, login
from .harness import API, Harness

MESSAGES = f"{API}/email/messages"
TEST = f"{API}/email/server/test"
ALICE = "alice@sandbox.test"


async def ready(h: Harness, provider: str = "microsoft") -> None:
    await h.configure(provider)
    assert (await h.authorize(account=ALICE)).status_code == 200


async def send_one(h: Harness) -> dict[str, Any]:
    """Queue a message, let a worker try it, and return the message as the API shows it."""
    r = await h.api.post(MESSAGES, json={"to": ["bob@example.com"], "subject": "s", "text": "t"})
    assert r.status_code == 202, r.text
    await Worker(h.services.outbox, h.services.mailer).drain(max_cycles=3)
    shown: dict[str, Any] = (await h.api.get(f"{MESSAGES}/{r.json()['id']}")).json()
    return shown


async def failed_step(h: Harness) -> dict[str, Any]:
    body = (await h.api.post(TEST)).json()
    assert body["ok"] is False
    step: dict[str, Any] = body["steps"][-1]
    assert step["ok"] is False
    return step


async def test_smtp_auth_disabled_is_held_with_the_set_casmailbox_command(harness: Harness) -> None:
    await ready(harness)
    harness.sandbox.smtp_faults.set(ALICE, "smtp_auth_disabled")
    message = await send_one(harness)
    assert message["status"] == "held"  # kept, not lost: released when the administrator fixes it
    error = message["last_error"]
    assert error["code"] == "smtp_auth_failed" and error["smtp_code"] == 535
    assert error["smtp_reply"].startswith("5.7.139 Authentication unsuccessful, SmtpClientAuthentication")
    assert "SMTP AUTH (authenticated client submission) is disabled" in error["message"]
    assert "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false" in error["message"]
    step = await failed_step(harness)
    assert step["name"] == "auth" and "535 5.7.139" in step["detail"]
    assert "Likely cause: SMTP AUTH (authenticated client submission) is disabled" in step["detail"]
    assert "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false" in step["hint"]


async def test_a_token_of_another_mailbox_says_the_wrong_account_consented(harness: Harness) -> None:
    await ready(harness)
    r = await harness.api.put(f"{API}/email/server", json={"username": "bob@sandbox.test"})
    assert r.status_code == 200, r.text
    step = await failed_step(harness)
    assert step["name"] == "auth" and "535 5.7.3 Authentication unsuccessful" in step["detail"]
    assert "the Username is not the mailbox that consented" in step["detail"]
    assert "Authorize again signed in as the Username's mailbox" in step["hint"]


async def test_basic_auth_refused_says_to_use_oauth(make_harness: Any) -> None:
    h: Harness = await make_harness(smtp_password_users={ALICE: "pw"})
    await h.configure(authentication="password", username=ALICE, sender=ALICE, password="pw")
    assert (await h.api.post(TEST)).json()["ok"] is True
    h.sandbox.smtp_faults.set(ALICE, "basic_auth_refused")
    step = await failed_step(h)
    assert "550 5.7.30 Basic authentication is not supported for Client Submission" in step["detail"]
    assert "no longer accepts a password (Basic authentication)" in step["detail"]
    assert step["hint"].startswith("Set Authentication to oauth on the Email server page")
    message = await send_one(h)
    assert message["status"] == "held" and message["last_error"]["code"] == "smtp_auth_failed"


async def test_send_as_denied_fails_the_message_with_the_permission_to_grant(harness: Harness) -> None:
    await ready(harness)
    harness.sandbox.smtp_faults.set(ALICE, "send_as_denied")
    message = await send_one(harness)
    assert message["status"] == "failed"
    error = message["last_error"]
    assert error["smtp_code"] == 550 and error["smtp_reply"].startswith("5.7.60 SMTP; Client does not have")
    assert "may not send as this sender address (no Send As permission)" in error["message"]
    assert "Add-RecipientPermission -AccessRights SendAs" in error["message"]


@pytest.mark.parametrize(
    ("fault", "reply", "cause"),
    [
        ("login_throttled", "454 4.7.0 Too many login attempts", "throttling logins"),
        ("too_many_connections", "432 4.3.2 Concurrent connections limit exceeded", "simultaneous connections"),
    ],
)
async def test_throttling_is_retried_with_what_it_means(harness: Harness, fault: str, reply: str, cause: str) -> None:
    await ready(harness)
    harness.sandbox.smtp_faults.set("*", fault)  # type: ignore[arg-type]
    message = await send_one(harness)
    assert message["status"] == "retrying" and message["next_attempt_at"]  # transient: tried again later
    assert message["last_error"]["code"] == "smtp_transient"
    assert reply in message["last_error"]["message"] and cause in message["last_error"]["message"]
    assert "mailgate retries later" in message["last_error"]["message"]
    step = await failed_step(harness)
    assert reply in step["detail"] and cause in step["detail"]


async def test_a_revoked_microsoft_grant_gives_the_cause_in_the_token_status(harness: Harness) -> None:
    await ready(harness)
    harness.sandbox.revoke_all()
    harness.sandbox.expire_access_tokens()
    harness.clock.advance(3600)
    step = await failed_step(harness)
    assert step["name"] == "auth" and "invalid_grant (AADSTS70008" in step["detail"]
    assert "expired or was revoked. Likely causes: 90 days without use; the user changed the password" in step["detail"]
    assert "click Authorize to authorize again" in step["hint"]
    view = await harness.view()
    assert view["token_status"] == "reauthorization_required"
    reason = view["token_status_reason"]
    assert "AADSTS70008" in reason and "Trace ID" not in reason.split("(", 1)[0]
    assert "password or MFA settings" in reason and "click Authorize to authorize again" in reason


async def test_a_dead_google_grant_points_at_the_testing_consent_screen(harness: Harness) -> None:
    await ready(harness, "google")
    harness.sandbox.revoke_all()
    harness.sandbox.expire_access_tokens()
    harness.clock.advance(3600)
    message = await send_one(harness)
    assert message["status"] == "held" and message["last_error"]["code"] == "reauthorization_required"
    text = message["last_error"]["message"]
    assert "invalid_grant (Token has been expired or revoked.)" in text
    assert "in Testing (tokens die 7 days after consent)" in text and "publish the consent screen" in text


async def test_a_wrong_client_secret_says_to_paste_the_value(harness: Harness) -> None:
    await ready(harness)
    r = await harness.api.put(f"{API}/oauth/config", json={"client_secret": "the-secret-id-not-its-value"})
    assert r.status_code == 200, r.text
    harness.clock.advance(3600)
    step = await failed_step(harness)
    assert "invalid_client (AADSTS7000215" in step["detail"]
    assert "often the secret's ID was pasted instead of its Value" in step["detail"]
    assert step["hint"].startswith("Paste the secret's Value")


async def test_denied_consent_on_the_result_page_says_why_and_keeps_the_provider_text(harness: Harness) -> None:
    await harness.configure("microsoft")
    back = await harness.consent(accept=False)
    page = await harness.api.get(back)
    assert page.status_code == 400
    assert "Likely cause: Consent was denied at the provider" in page.text
    assert "Authorize again and accept the permissions to connect." in page.text
    assert 'id="provider-text">The user denied consent<' in page.text
    answer = await harness.api.get(back, headers={"Accept": "application/json"})
    body = answer.json()  # the state is spent: this one is refused for that, not for the consent
    assert body["error"] == "oauth_flow_error"


async def test_the_email_server_page_shows_the_cause_and_the_fix(harness: Harness) -> None:
    await ready(harness)
    harness.sandbox.smtp_faults.set(ALICE, "smtp_auth_disabled")
    transport = httpx.ASGITransport(app=create_app(harness.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as browser:
        assert (await login(browser)).status_code == 303
        server = {
            "host": "127.0.0.1",
            "port": str(harness.sandbox.smtp_port),
            "security": "starttls",
            "authentication": "oauth",
            "username": ALICE,
            "sender": ALICE,
            "ca_file": str(harness.sandbox.ca_file),
        }
        token = await form_token(browser, EMAIL)
        page = await browser.post(EMAIL, data={**server, "action": "test", "csrf_token": token})
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "535 5.7.139 Authentication unsuccessful" in text
    assert "Likely cause: SMTP AUTH (authenticated client submission) is disabled" in text
    assert "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false" in text

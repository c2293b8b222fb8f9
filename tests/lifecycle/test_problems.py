"""Each grant failure driven through the sandbox shows as its exact problem in ``/healthz`` (code, fix, link),
the mail waits (held or retrying, never lost), and health comes back to ok once the administrator fixed it."""

from __future__ import annotations

from datetime import datetime, timedelta

from .conftest import API, CLIENT_ID, MAILBOX, LifeFactory, post_and_drain

EMAIL_PAGE = "/ddenterpriseapi/configuration/email-server"
OAUTH_PAGE = "/ddenterpriseapi/configuration/oauth"
HOUR, DAY = 3600, 86400


async def test_an_unconfigured_default_account_is_not_a_problem(make_life: LifeFactory) -> None:
    life = await make_life()
    await life.env.api.delete(f"{API}/accounts/default")  # whatever it did, nothing configured is nothing wrong
    health = await life.health()
    assert health["status"] == "ok"
    # Configured but not authorized yet: said, as a warning (setting up is not an outage).
    problem = await life.problem("not_authorized")
    assert problem["severity"] == "warning" and problem["link"] == EMAIL_PAGE
    assert (await life.health())["status"] == "ok"


async def test_one_mailbox_revoked_degrades_holds_mail_then_recovers(make_life: LifeFactory) -> None:
    life = await make_life()
    assert (await life.harness.authorize()).status_code == 200
    sent = await post_and_drain(life)
    assert await life.statuses(sent) == ["sent"]
    assert (await life.health()) | {"worker": ""} == {
        "status": "ok",
        "database": "ok",
        "token_status": "valid",
        "worker": "",
        "problems": [],
    }
    life.sandbox.failures.revoke_account(MAILBOX)
    life.sandbox.expire_access_tokens()
    life.env.clock.advance(HOUR)
    await life.env.worker.close()
    held = await post_and_drain(life, 3)
    assert await life.statuses(held) == ["held"] * 3
    health = await life.health()
    assert health["status"] == "degraded"
    problem = await life.problem("reauthorization_required")
    assert problem["account"] == "default" and problem["severity"] == "critical"
    assert "invalid_grant" in problem["message"]
    assert problem["fix"] == "On the Email server page, click Authorize and consent again with the mailbox that sends."
    assert problem["link"] == EMAIL_PAGE
    # Ten minutes later the mail has waited long enough to be a problem of its own.
    life.env.clock.advance(11 * 60)
    assert set(await life.codes()) == {"reauthorization_required", "delivery_failing"}
    failing = await life.problem("delivery_failing")
    assert "3 message(s) waiting" in failing["message"]
    assert "kept and sent when the cause is fixed" in failing["fix"]
    # Consent again: the held mail goes, and health is back.
    assert (await life.harness.authorize()).status_code == 200
    await life.env.worker.drain()
    assert await life.statuses(held) == ["sent"] * 3
    assert await life.health() | {"worker": ""} == {
        "status": "ok",
        "database": "ok",
        "token_status": "valid",
        "worker": "",
        "problems": [],
    }


async def test_an_expired_client_secret_is_named_and_mail_waits(make_life: LifeFactory) -> None:
    life = await make_life()
    assert (await life.harness.authorize()).status_code == 200
    life.sandbox.failures.expired_secrets.add(CLIENT_ID)
    life.sandbox.expire_access_tokens()
    life.env.clock.advance(HOUR)
    await life.env.worker.close()
    waiting = await post_and_drain(life, 2)
    assert set(await life.statuses(waiting)) <= {"held", "retrying"}
    assert (await life.health())["status"] == "degraded"
    problem = await life.problem("client_secret_expired")
    assert "AADSTS7000222" in problem["message"]
    assert problem["fix"].startswith("Create a new client secret for the app registration")
    assert problem["link"] == OAUTH_PAGE
    # A new secret (the sandbox "renews" it) is saved: the mail goes and the problem ends.
    life.sandbox.failures.expired_secrets.discard(CLIENT_ID)
    r = await life.env.api.put(f"{API}/oauth/config", json={"client_secret": "sandbox-secret"})
    assert r.status_code == 200, r.text
    # Saving the secret releases the held mail: no retry by hand.
    await life.env.worker.drain()
    assert await life.statuses(waiting) == ["sent", "sent"]
    assert (await life.health())["status"] == "ok"
    assert await life.codes() == []


async def test_client_secret_expiry_date_warns_30_7_1_days_ahead(make_life: LifeFactory) -> None:
    life = await make_life()
    assert (await life.harness.authorize()).status_code == 200
    today = life.env.clock.now.date()
    expires = today.fromordinal(today.toordinal() + 40)
    r = await life.env.api.put(f"{API}/oauth/config", json={"client_secret_expires_on": expires.isoformat()})
    assert r.status_code == 200 and r.json()["client_secret_expires_on"] == expires.isoformat()
    assert await life.codes() == []
    seen = []
    for days_left, severity, status in (
        (30, "warning", "ok"),
        (7, "critical", "degraded"),
        (1, "critical", "degraded"),
    ):
        life.env.clock.now = life.env.clock.now.replace(year=expires.year, month=expires.month, day=expires.day) - (
            expires - expires.fromordinal(expires.toordinal() - days_left)
        )
        health = await life.health()
        (problem,) = health["problems"]
        seen.append(problem["code"])
        assert (problem["severity"], health["status"]) == (severity, status)
        assert f"in {days_left} day" in problem["message"] and problem["link"] == OAUTH_PAGE
    life.env.clock.now = life.env.clock.now.replace(year=expires.year, month=expires.month, day=expires.day)
    (problem,) = (await life.health())["problems"]
    seen.append(problem["code"])
    assert seen == [
        "client_secret_expiring_30d",
        "client_secret_expiring_7d",
        "client_secret_expiring_1d",
        "client_secret_expired",
    ]
    # A new secret without a date of its own drops the old secret's date.
    r = await life.env.api.put(f"{API}/oauth/config", json={"client_secret": "sandbox-secret"})
    assert r.json()["client_secret_expires_on"] is None
    assert await life.codes() == []


async def test_client_secret_expiry_date_is_validated(make_life: LifeFactory) -> None:
    life = await make_life()
    before = (await life.env.api.get(f"{API}/oauth/config")).json()
    r = await life.env.api.put(f"{API}/oauth/config", json={"client_secret_expires_on": "2027-13-40"})
    assert r.status_code == 422 and "client_secret_expires_on" in r.text
    assert (await life.env.api.get(f"{API}/oauth/config")).json() == before
    r = await life.env.api.put(f"{API}/oauth/config", json={"client_secret_expires_on": "2027-06-30"})
    assert r.json()["client_secret_expires_on"] == "2027-06-30"
    r = await life.env.api.put(f"{API}/oauth/config", json={"client_secret_expires_on": None})
    assert r.json()["client_secret_expires_on"] is None


async def test_google_testing_grant_warned_ahead_then_says_to_publish(make_life: LifeFactory) -> None:
    life = await make_life("google")
    life.sandbox.failures.testing_lifetime = 7 * DAY  # consent screen External + Testing
    assert (await life.harness.authorize()).status_code == 200
    # From the consent on: a warning (health ok), with the fix.
    problem = await life.problem("testing_grant_expiring")
    assert problem["severity"] == "warning" and (await life.health())["status"] == "ok"
    view = await life.harness.view()
    consented = datetime.fromisoformat(view["authorized_at"])
    assert view["refresh_token_expires_at"] == (consented + timedelta(days=7)).isoformat()
    assert view["refresh_token_issued_at"] == view["authorized_at"]
    assert "Publishing status to In production" in problem["fix"]
    sent = await post_and_drain(life)
    assert await life.statuses(sent) == ["sent"]
    # Two days before its end it degrades health: there is still time to act.
    life.env.clock.advance(5 * DAY + HOUR)
    await post_and_drain(life)  # a refresh on the way: the end is said again, unchanged
    assert (await life.problem("testing_grant_expiring"))["severity"] == "critical"
    assert (await life.health())["status"] == "degraded"
    # The grant dies at 7 days: invalid_grant, recognised as the Testing limit.
    life.env.clock.advance(2 * DAY)
    await life.env.worker.close()
    held = await post_and_drain(life, 2)
    assert await life.statuses(held) == ["held", "held"]
    problem = await life.problem("reauthorization_required")
    assert "consent screen in Testing" in problem["message"]
    assert problem["fix"] == (
        "In the Google Cloud console, open APIs & Services > OAuth consent screen and set Publishing status to "
        "In production (Publish app): grants of a consent screen in Testing die 7 days after consent. Then "
        "authorize again on the Email server page."
    )
    # Published (no fixed lifetime any more) and authorized again: all clear, the mail goes.
    life.sandbox.failures.testing_lifetime = None
    assert (await life.harness.authorize()).status_code == 200
    await life.env.worker.drain()
    assert await life.statuses(held) == ["sent", "sent"]
    assert await life.codes() == []


async def test_google_invalid_grant_a_week_after_consent_is_recognised_without_the_field(
    make_life: LifeFactory,
) -> None:
    life = await make_life("google")
    assert (await life.harness.authorize()).status_code == 200
    life.env.clock.advance(7 * DAY)
    life.sandbox.failures.revoke_account(MAILBOX)  # the provider says no more than invalid_grant
    await post_and_drain(life)
    assert "consent screen in Testing" in (await life.problem("reauthorization_required"))["message"]


async def test_a_wrong_mailbox_consenting_is_named_with_the_fix(make_life: LifeFactory) -> None:
    life = await make_life()
    r = await life.env.api.put(f"{API}/email/server", json={"username": MAILBOX, "sender": MAILBOX})
    assert r.status_code == 200, r.text
    life.sandbox.failures.consent_as = "mallory@sandbox.test"  # the account picker chose another mailbox
    assert (await life.harness.authorize()).status_code == 200
    problem = await life.problem("wrong_mailbox_consented")
    assert (await life.health())["status"] == "degraded"
    assert problem["message"].startswith("mallory@sandbox.test authorized mailgate, but the Email server page")
    assert f"sign in at the provider as {MAILBOX}" in problem["fix"] and problem["link"] == EMAIL_PAGE
    waiting = await post_and_drain(life)
    assert (await life.statuses(waiting))[0] in {"held", "retrying"}
    life.sandbox.failures.consent_as = ""
    assert (await life.harness.authorize()).status_code == 200
    for _ in range(3):
        life.env.clock.advance(15 * 60)
        await life.env.worker.drain()
    assert await life.statuses(waiting) == ["sent"]
    assert await life.codes() == []


async def test_delivery_failing_only_after_ten_minutes_and_gone_after_a_success(make_life: LifeFactory) -> None:
    life = await make_life()
    assert (await life.harness.authorize()).status_code == 200
    life.env.clock.advance(HOUR)  # the access token expired: the next send needs the token endpoint
    life.sandbox.set_token_endpoint_available(False)
    waiting = await post_and_drain(life, 2)
    assert await life.statuses(waiting) == ["retrying", "retrying"]
    life.env.clock.advance(8 * 60)
    await life.env.worker.drain()
    assert await life.codes() == []  # a short outage retries quietly
    life.env.clock.advance(3 * 60)
    await life.env.worker.drain()
    problem = await life.problem("delivery_failing")
    assert (await life.health())["status"] == "degraded"
    assert "2 message(s) waiting, none sent since" in problem["message"]
    assert "token endpoint" in problem["message"]
    life.sandbox.set_token_endpoint_available(True)
    for _ in range(3):
        life.env.clock.advance(10 * 60)
        await life.env.worker.drain()
    assert await life.statuses(waiting) == ["sent", "sent"]
    assert await life.codes() == []
    # A message that fails after the last success starts a new count from that success.
    life.sandbox.set_token_endpoint_available(False)
    life.env.clock.advance(2 * HOUR)
    await life.env.worker.close()  # no open connection left: the next send needs a token
    later = await post_and_drain(life)
    life.env.clock.advance(5 * 60)
    await life.env.worker.drain()
    assert await life.statuses(later) == ["retrying"] and await life.codes() == []

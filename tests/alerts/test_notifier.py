"""The notifier against real receivers: one notification when a condition starts and one when it is resolved,
never one per message or per check; a webhook that is down at first gets them later, retried with backoff and
in order; email through a healthy account's outbox (to the sandbox's SMTP server) or the fallback SMTP server;
a restart neither repeats nor loses one."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes
from email.policy import default as default_policy

from mailgate.alerts import AlertSettingsUpdate, FallbackSmtpUpdate
from mailgate.app import Services, build_services
from mailgate.problems import Problem

from ..outbox.conftest import API, Env, SandboxEnv
from ..smtp.servers import Mailbox, RunningServer
from .conftest import Problems
from .receiver import WebhookReceiver


async def _states(services: Services) -> list[tuple[str, str, str, int]]:
    """(event, code, webhook state, webhook attempts) of each notification, oldest first."""
    return [
        (n.event, n.code, n.states["webhook"][0], n.states["webhook"][1])
        for n in reversed(await services.notifier.recent())
    ]


async def test_revoked_consent_alerted_once_and_resolved_once_with_the_webhook_down_at_first(
    sandbox_env: SandboxEnv, receiver: WebhookReceiver
) -> None:
    env, h, sandbox = sandbox_env.env, sandbox_env.harness, sandbox_env.sandbox
    notifier = env.services.notifier
    assert (await h.authorize()).status_code == 200
    r = await env.api.put(f"{API}/alerts", json={"webhook_url": receiver.url})
    assert r.status_code == 200, r.text
    await notifier.check()
    assert await notifier.recent() == []  # all is well: nothing to say

    # The grant is revoked: the worker holds every message; the condition is announced once, whatever the
    # number of messages held and of checks made.
    sandbox.revoke_all()
    sandbox.expire_access_tokens()
    env.clock.advance(3600)
    await env.worker.close()
    ids = [await env.post(to=[f"held{i}@example.com"]) for i in range(4)]
    await env.worker.drain()
    assert {(await env.status(i))["status"] for i in ids} == {"held"}
    for _ in range(3):
        await notifier.check()
    # The webhook is down: tried at once, then after 30 s, then 60 s more (exponential backoff).
    assert await _states(env.services) == [("started", "reauthorization_required", "pending", 1)]
    env.clock.advance(29)
    await notifier.check()
    assert (await _states(env.services))[0][3] == 1  # not due yet
    env.clock.advance(1)
    await notifier.check()
    assert (await _states(env.services))[0][3] == 2
    env.clock.advance(59)
    await notifier.check()
    assert (await _states(env.services))[0][3] == 2
    env.clock.advance(1)
    await notifier.check()
    assert (await _states(env.services))[0][3] == 3

    # Authorized again: the held mail goes out, and the resolution waits behind the start.
    assert (await h.authorize()).status_code == 200
    await env.worker.drain()
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}
    await notifier.check()
    assert await _states(env.services) == [
        ("started", "reauthorization_required", "pending", 3),
        ("resolved", "reauthorization_required", "pending", 0),
    ]
    assert receiver.received == []

    await receiver.up()
    env.clock.advance(120)
    await notifier.check()
    assert [p["event"] for p in receiver.received] == ["started", "resolved"]
    started = receiver.received[0]
    assert started["account"] == "default" and started["code"] == "reauthorization_required"
    assert started["severity"] == "critical" and "Authorize" in started["fix"] and started["message"]
    assert started["link"] == "http://localhost:8080/ddenterpriseapi/configuration/email-server"
    assert set(started) >= {"event", "account", "code", "message", "fix", "since", "link", "severity"}
    assert await _states(env.services) == [
        ("started", "reauthorization_required", "sent", 4),
        ("resolved", "reauthorization_required", "sent", 1),
    ]
    # Nothing more, however long it runs.
    for _ in range(3):
        env.clock.advance(3600)
        await notifier.check()
    assert len(receiver.received) == 2


async def test_a_restart_neither_repeats_nor_loses_a_notification(
    env: Env, receiver: WebhookReceiver, problems: Problems
) -> None:
    settings, clock = env.settings, env.clock
    problems.current = [Problem("default", "delivery_failing", "Delivery fails.", "Check the server.", clock())]
    first = env.services
    first.notifier.replace_source(problems)
    await first.alerts.save(AlertSettingsUpdate(webhook_url=receiver.url))
    await first.notifier.check()  # the webhook is down: the notification waits, stored
    assert await _states(first) == [("started", "delivery_failing", "pending", 1)]

    async def restarted() -> Services:
        services = await build_services(settings, clock=clock)
        services.notifier.replace_source(problems)
        return services

    second = await restarted()
    try:
        await receiver.up()
        clock.advance(30)
        await second.notifier.check()
        await second.notifier.check()
    finally:
        await second.aclose()
    assert [p["event"] for p in receiver.received] == ["started"]  # not lost, once

    third = await restarted()
    try:
        clock.advance(3600)
        await third.notifier.check()  # the condition lasts: nothing new
        assert len(receiver.received) == 1
        problems.current = []
        await third.notifier.check()
        await third.notifier.check()
    finally:
        await third.aclose()
    assert [(p["event"], p["code"]) for p in receiver.received] == [
        ("started", "delivery_failing"),
        ("resolved", "delivery_failing"),
    ]


async def test_two_notifiers_on_one_database_announce_once(
    env: Env, receiver: WebhookReceiver, problems: Problems
) -> None:
    """Two processes (serve and a worker, or workers on PostgreSQL) run a notifier each."""
    other = await build_services(env.settings, clock=env.clock)
    try:
        for services in (env.services, other):
            services.notifier.replace_source(problems)
        await receiver.up()
        await env.services.alerts.save(AlertSettingsUpdate(webhook_url=receiver.url))
        problems.current = [Problem("default", "delivery_failing", "Delivery fails.", "Check.", env.clock())]
        for _ in range(2):
            await env.services.notifier.check()
            await other.notifier.check()
        problems.current = []
        await other.notifier.check()
        await env.services.notifier.check()
    finally:
        await other.aclose()
    assert [p["event"] for p in receiver.received] == ["started", "resolved"]


async def test_email_alert_through_a_healthy_accounts_outbox(sandbox_env: SandboxEnv, problems: Problems) -> None:
    """The alert is about account ``branch``; ``default`` (consent valid) sends it, from the outbox."""
    env, h, sandbox = sandbox_env.env, sandbox_env.harness, sandbox_env.sandbox
    assert (await h.authorize()).status_code == 200
    notifier = env.services.notifier
    notifier.replace_source(problems)
    await env.services.alerts.save(AlertSettingsUpdate(email_to=["ops@example.com"]))
    problems.current = [Problem("branch", "reauthorization_required", "Consent lost.", "Authorize again.", env.clock())]
    await notifier.check()
    await notifier.check()
    recent = await notifier.recent()
    assert recent[0].states["email"][0] == "sent" and "through account default" in recent[0].states["email"][2]
    await env.worker.drain()  # the worker runs meanwhile (the outbox does not promise an order within a batch)
    env.clock.advance(60)
    problems.current = []
    await notifier.check()
    await env.worker.drain()
    received = [m for m in sandbox.messages if "ops@example.com" in m.rcpt_tos]
    assert len(received) == 2
    subjects = [str(m.message["Subject"]) for m in received]
    assert "Needs attention: branch: Consent lost." in subjects[0]
    assert "Resolved: branch: Consent lost." in subjects[1]
    assert "What to do: Authorize again." in received[0].message.get_body().get_content()  # type: ignore[union-attr]


async def test_email_alert_through_the_fallback_server_when_no_account_is_healthy(
    env: Env, problems: Problems, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(Mailbox(), tls="none")
    notifier = env.services.notifier
    notifier.replace_source(problems)
    await env.services.alerts.save(
        AlertSettingsUpdate(
            email_to=["ops@example.com"],
            fallback_smtp=FallbackSmtpUpdate(
                host=server.host, port=server.port, security="none", sender="mailgate@example.com"
            ),
        )
    )
    problems.current = [Problem("default", "reauthorization_required", "Consent lost.", "Authorize.", env.clock())]
    await notifier.check()
    problems.current = []
    await notifier.check()
    assert [m.rcpt_tos for m in server.handler.messages] == [("ops@example.com",), ("ops@example.com",)]
    first = message_from_bytes(server.handler.messages[0].content, policy=default_policy)
    assert "Needs attention: default" in str(first["Subject"]) and first["From"] == "mailgate@example.com"
    states = [n.states["email"] for n in await notifier.recent()]
    assert all(s[0] == "sent" and "fallback SMTP server" in s[2] for s in states)

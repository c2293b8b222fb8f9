"""The outbox against the sandbox provider: OAuth tokens per connection, not per message; consent revoked
then granted again; a token endpoint that is down for a while."""

from __future__ import annotations

from .conftest import API, SandboxEnv


async def test_api_to_inbox_with_one_token_per_lifetime(sandbox_env: SandboxEnv) -> None:
    env, h = sandbox_env.env, sandbox_env.harness
    assert (await h.authorize()).status_code == 200
    ids = [await env.post(to=[f"r{i}@example.com"], subject=f"m{i}") for i in range(40)]
    # Microsoft allows 30 messages a minute per mailbox.
    assert await env.worker.drain() == 30
    env.clock.advance(61)
    assert await env.worker.drain() == 10
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}
    assert len(sandbox_env.sandbox.messages) == 40
    stats = sandbox_env.sandbox.stats()
    # The access token of the authorization is used; each pooled connection authenticates once.
    assert stats["token_requests"].get("refresh_token", 0) == 0
    assert stats["smtp_auth_ok"] <= 3
    # The access token expires (mailgate's clock) and the connections are closed: one refresh for the next
    # batches, whatever their number.
    env.clock.advance(3600)
    await env.worker.close()
    for i in range(3):
        await env.post(to=[f"later{i}@example.com"])
        await env.worker.drain()
    assert sandbox_env.sandbox.stats()["token_requests"].get("refresh_token", 0) == 1
    assert env.services.tokens.refresh_requests == 1
    metrics = (await env.api.get("/metrics")).text
    assert 'mailgate_outbox_messages{status="sent"} 43' in metrics


async def test_revoked_consent_holds_then_reauthorization_releases(sandbox_env: SandboxEnv) -> None:
    env, h, sandbox = sandbox_env.env, sandbox_env.harness, sandbox_env.sandbox
    assert (await h.authorize()).status_code == 200
    first = await env.post(to=["before@example.com"])
    await env.worker.drain()
    assert (await env.status(first))["status"] == "sent"
    # The user revokes the grant; the access token also dies: the next refresh gets invalid_grant.
    sandbox.revoke_all()
    sandbox.expire_access_tokens()
    env.clock.advance(3600)
    await env.worker.close()  # connections die with the revocation
    ids = [await env.post(to=[f"held{i}@example.com"]) for i in range(5)]
    await env.worker.drain()
    shown = [await env.status(i) for i in ids]
    assert {s["status"] for s in shown} == {"held"}, shown
    assert shown[0]["last_error"]["code"] == "reauthorization_required"
    assert (await h.view())["token_status"] == "reauthorization_required"
    # Held, not retried: more time and more messages change nothing, and the token endpoint is left alone.
    refreshes = sandbox.stats()["token_requests"].get("refresh_token", 0)
    env.clock.advance(86400)
    ids.append(await env.post(to=["meanwhile@example.com"]))
    await env.worker.drain()
    assert (await env.status(ids[-1]))["status"] == "held"
    assert sandbox.stats()["token_requests"].get("refresh_token", 0) == refreshes
    listed = (await env.api.get(f"{API}/email/messages", params={"status": "held"})).json()
    assert listed["total"] == 6
    # The administrator authorizes again: the held messages go out by themselves.
    assert (await h.authorize()).status_code == 200
    await env.worker.drain()
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}
    assert len(sandbox.messages) == 7


async def test_token_endpoint_down_for_a_while(sandbox_env: SandboxEnv) -> None:
    env, h, sandbox = sandbox_env.env, sandbox_env.harness, sandbox_env.sandbox
    assert (await h.authorize()).status_code == 200
    env.clock.advance(3600)  # the access token has expired: the next connection needs a refresh
    sandbox.set_token_endpoint_available(False)
    ids = [await env.post(to=[f"t{i}@example.com"]) for i in range(4)]
    await env.worker.drain()
    shown = [await env.status(i) for i in ids]
    assert {s["status"] for s in shown} == {"retrying"}
    assert shown[0]["last_error"]["code"] == "token_endpoint_unavailable" or any(
        s["last_error"] and s["last_error"]["code"] == "token_endpoint_unavailable" for s in shown
    )
    env.clock.advance(60)
    await env.worker.drain()  # still down: retried later again, not failed, not held
    assert {(await env.status(i))["status"] for i in ids} == {"retrying"}
    sandbox.set_token_endpoint_available(True)
    env.clock.advance(300)
    await env.worker.drain()
    assert {(await env.status(i))["status"] for i in ids} == {"sent"}
    assert (await h.view())["token_status"] == "valid"

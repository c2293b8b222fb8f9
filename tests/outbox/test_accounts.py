"""Accounts end to end on the sandbox (issue 21): two mailboxes consenting through the one redirect URI,
routing by From, a From no account may use, isolation of a revoked consent, deletion with queued mail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from mailgate.configure import EmailServerUpdate
from mailgate.store.models import OAuthAccountRow, OAuthStateRow, OutboxMessageRow

from .conftest import API, Env, SandboxEnv

MESSAGES = f"{API}/email/messages"
REPORTS = "reports@sandbox.test"


async def consent(s: SandboxEnv, account: str, mailbox: str) -> httpx.Response:
    """Authorize ``account`` at the sandbox, signing in as ``mailbox``; mailgate's answer to the redirect."""
    back = await s.harness.consent(account=mailbox, start_at=f"{API}/accounts/{account}/oauth/authorize")
    return await s.env.api.get(back, headers={"Accept": "application/json"})


async def add_reports_account(s: SandboxEnv, **server: Any) -> None:
    """A second account on the same app registration (copied from default), consented by reports@."""
    env = s.env
    r = await env.api.put(f"{API}/accounts/reports/oauth/config", json={"copy_from": "default"})
    assert r.status_code == 200, r.text
    assert r.json()["client_id"] == "sandbox-client" and r.json()["client_secret_set"] is True
    body = {
        "host": "127.0.0.1",
        "port": s.sandbox.smtp_port,
        "security": "starttls",
        "authentication": "oauth",
        "ca_file": str(s.sandbox.ca_file),
        **server,
    }
    r = await env.api.put(f"{API}/accounts/reports/email/server", json=body)
    assert r.status_code == 200, r.text
    answer = await consent(s, "reports", REPORTS)
    assert answer.status_code == 200 and answer.json()["account"] == REPORTS, answer.text


async def post(env: Env, **fields: Any) -> httpx.Response:
    body = {"to": ["bob@example.com"], "subject": "hello", "text": "body\n", **fields}
    return await env.api.post(MESSAGES, json=body)


async def test_two_mailboxes_through_one_redirect_uri_routed_by_from(sandbox_env: SandboxEnv) -> None:
    s, env = sandbox_env, sandbox_env.env
    assert (await s.harness.authorize()).status_code == 200  # default: alice@sandbox.test
    await add_reports_account(s, senders=["*@Reports.Sandbox.Test"])
    default = (await env.api.get(f"{API}/oauth/config")).json()
    reports = (await env.api.get(f"{API}/accounts/reports/oauth/config")).json()
    assert default["account"] == "alice@sandbox.test" and reports["account"] == REPORTS
    assert default["redirect_uri"] == reports["redirect_uri"]  # one registered redirect URI for both
    async with env.services.db.session() as session:
        states = (await session.execute(select(OAuthStateRow.account_id))).scalars().all()
        tokens = {row.id: row.account for row in (await session.execute(select(OAuthAccountRow))).scalars()}
    assert sorted(states) == ["default", "reports"]  # each state said which account was consenting
    assert tokens == {"default": "alice@sandbox.test", "reports": REPORTS}
    server = (await env.api.get(f"{API}/accounts/reports/email/server")).json()
    assert server["username"] == REPORTS and server["senders"] == ["*@reports.sandbox.test"]

    routed = {}
    for sender in ("alice@sandbox.test", "Reports@Sandbox.test", "alerts@REPORTS.sandbox.test", None):
        r = await post(env, **({"from": sender} if sender else {}))
        assert r.status_code == 202, r.text
        routed[sender] = await env.status(r.json()["id"])
    assert routed["alice@sandbox.test"]["account"] == "default"
    assert routed["Reports@Sandbox.test"]["account"] == "reports"
    assert routed["alerts@REPORTS.sandbox.test"]["account"] == "reports"  # by its *@domain
    assert routed[None]["account"] == "default" and routed[None]["from"] == "alice@sandbox.test"
    r = await post(env, account="reports")
    assert r.status_code == 202 and (await env.status(r.json()["id"]))["from"] == REPORTS

    before = await env.stored_count()
    refused = [
        await post(env, **{"from": "mallory@evil.test"}),
        await post(env, **{"from": "alice@sandbox.test"}, account="reports"),
        await post(env, account="nope"),
        await post(env, account="Bad Name"),
    ]
    assert [r.status_code for r in refused] == [422] * 4
    assert [list(r.json()["fields"]) for r in refused] == [["from"], ["from"], ["account"], ["account"]]
    assert "mallory@evil.test" in refused[0].json()["fields"]["from"]
    raw = b"From: mallory@evil.test\r\nTo: bob@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    r = await env.api.post(MESSAGES, content=raw, headers={"Content-Type": "message/rfc822"})
    assert r.status_code == 422 and list(r.json()["fields"]) == ["from"], r.text
    assert await env.stored_count() == before  # nothing stored

    listed = {a["name"]: a for a in (await env.api.get(f"{API}/accounts")).json()}
    assert list(listed) == ["default", "reports"]
    assert listed["reports"]["mailbox"] == REPORTS and listed["reports"]["queued"] == 3
    assert listed["default"]["queued"] == 2 and listed["reports"]["token_status"] == "valid"

    await env.worker.drain()
    statuses = {k: (await env.status(v["id"]))["status"] for k, v in routed.items()}
    # The sandbox, like Exchange without Send As rights, refuses a From other than the mailbox.
    assert statuses == {"alice@sandbox.test": "sent", "Reports@Sandbox.test": "sent",
                        "alerts@REPORTS.sandbox.test": "failed", None: "sent"}  # fmt: skip
    by_mailbox = sorted((m.account, m.mail_from.lower()) for m in s.sandbox.messages)
    assert by_mailbox == [
        ("alice@sandbox.test", "alice@sandbox.test"),
        ("alice@sandbox.test", "alice@sandbox.test"),
        (REPORTS, REPORTS),
        (REPORTS, REPORTS),
    ]


async def test_one_account_losing_consent_holds_only_its_messages(sandbox_env: SandboxEnv) -> None:
    s, env = sandbox_env, sandbox_env.env
    assert (await s.harness.authorize()).status_code == 200
    await add_reports_account(s)
    async with env.services.db.session() as session:
        row = await session.get(OAuthAccountRow, "reports")
        assert row is not None
        refresh_token = env.services.box.decrypt(row.refresh_token_enc)
    # reports@ withdraws its consent (RFC 7009 at the provider); its access token dies with the grant.
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{s.sandbox.base_url}/revoke", data={"token": refresh_token})).status_code == 200
    env.clock.advance(3600)  # every cached access token is now due for a refresh
    await env.worker.close()
    theirs = [await post(env, **{"from": REPORTS}, subject=f"r{i}") for i in range(3)]
    ours = [await post(env, **{"from": "alice@sandbox.test"}, subject=f"a{i}") for i in range(3)]
    await env.worker.drain()
    assert {(await env.status(r.json()["id"]))["status"] for r in theirs} == {"held"}
    assert {(await env.status(r.json()["id"]))["status"] for r in ours} == {"sent"}
    listed = {a["name"]: a for a in (await env.api.get(f"{API}/accounts")).json()}
    assert listed["reports"]["held"] == 3 and listed["reports"]["token_status"] == "reauthorization_required"
    assert listed["default"]["token_status"] == "valid" and listed["default"]["held"] == 0
    # reports@ consents again: its held messages go out by themselves.
    assert (await consent(s, "reports", REPORTS)).status_code == 200
    await env.worker.drain()
    assert {(await env.status(r.json()["id"]))["status"] for r in theirs} == {"sent"}
    assert sorted(m.account for m in s.sandbox.messages) == ["alice@sandbox.test"] * 3 + [REPORTS] * 3


async def test_deleting_an_account_with_and_without_queued_mail(sandbox_env: SandboxEnv) -> None:
    s, env = sandbox_env, sandbox_env.env
    assert (await s.harness.authorize()).status_code == 200
    await add_reports_account(s)
    r = await env.api.delete(f"{API}/accounts/default")
    assert r.status_code == 409 and "default" in r.json()["message"], r.text
    queued = (await post(env, **{"from": REPORTS})).json()["id"]
    r = await env.api.delete(f"{API}/accounts/reports")
    assert r.status_code == 409 and "1 message" in r.json()["message"] and "force" in r.json()["hint"], r.text
    assert (await env.status(queued))["status"] == "queued"  # nothing changed
    assert (await env.api.get(f"{API}/accounts/reports/oauth/config")).json()["refresh_token_set"] is True

    r = await env.api.delete(f"{API}/accounts/reports", params={"force": "true"})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "reports", "deleted": True, "revoked_at_provider": True, "failed_messages": 1}
    shown = await env.status(queued)
    assert shown["status"] == "failed" and shown["last_error"]["code"] == "account_deleted"
    assert "account deleted" in shown["last_error"]["message"]
    assert s.sandbox.stats()["revocations"] >= 1
    assert [a["name"] for a in (await env.api.get(f"{API}/accounts")).json()] == ["default"]
    assert (await env.api.get(f"{API}/accounts/reports/email/server")).status_code == 404
    assert (await post(env, account="reports")).status_code == 422
    assert (await post(env, **{"from": REPORTS})).status_code == 422  # no account may send as it now
    await env.worker.drain()  # the worker lets the deleted account go; the failed message stays failed
    assert (await env.status(queued))["status"] == "failed"

    # Without mail waiting, an account goes at once (and a new one of the same name starts empty).
    await add_reports_account(s)
    r = await env.api.delete(f"{API}/accounts/reports")
    assert r.status_code == 200 and r.json()["failed_messages"] == 0, r.text
    assert (await env.api.delete(f"{API}/accounts/reports")).status_code == 404


async def test_a_from_the_consenting_mailbox_may_not_use_is_refused_before_it_is_queued(
    sandbox_env: SandboxEnv,
) -> None:
    """The README's messages example with another From: accepted (202) before accounts, then refused by the
    provider (550 5.7.60).  Now a 422 naming from, and nothing is stored."""
    s, env = sandbox_env, sandbox_env.env
    assert (await s.harness.authorize()).status_code == 200  # alice@sandbox.test
    before = await env.stored_count()
    r = await post(env, **{"from": "reports@example.com"})
    assert r.status_code == 422 and list(r.json()["fields"]) == ["from"], r.text
    assert "senders" in r.json()["hint"]
    assert await env.stored_count() == before
    ok = await post(env, **{"from": "Alice <ALICE@sandbox.test>"})
    assert ok.status_code == 202, ok.text


async def test_listing_and_purging_one_account(env: Env) -> None:
    """``GET /v2/email/messages?account=`` and ``mailgate outbox list|purge --account`` see one account's mail."""
    await env.services.accounts.save_email_server(
        "reports", EmailServerUpdate(host="smtp.example.com", authentication="none")
    )
    theirs = (await post(env, account="reports", **{"from": REPORTS})).json()["id"]
    ours = (await post(env, **{"from": "alice@example.com"})).json()["id"]
    listed = (await env.api.get(MESSAGES, params={"account": "reports"})).json()
    assert [m["id"] for m in listed["items"]] == [theirs] and listed["total"] == 1
    async with env.services.db.session() as session:
        await session.execute(update(OutboxMessageRow).values(status="failed"))
    assert await env.services.outbox.purge(["failed"], timedelta(0), "reports") == 1
    assert [m.id for m in (await env.services.outbox.list())[0]] == [ours]


async def test_a_consent_applies_to_the_next_message_at_once(sandbox_env: SandboxEnv) -> None:
    """Before any consent the account has no mailbox and restricts nothing (its mail waits, held); the consent
    makes its mailbox the sender policy for the very next request (the policy read is cached for a second)."""
    s, env = sandbox_env, sandbox_env.env
    assert (await post(env, **{"from": "mallory@evil.test"})).status_code == 202
    assert (await s.harness.authorize()).status_code == 200  # alice@sandbox.test
    r = await post(env, **{"from": "mallory@evil.test"})
    assert r.status_code == 422 and list(r.json()["fields"]) == ["from"], r.text

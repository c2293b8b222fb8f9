"""The sender policy of accounts (issue 21): who may send as which From, and which account a message takes."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import event

from mailgate.accounts import parse_senders
from mailgate.app import Services
from mailgate.configure import EmailServerUpdate
from mailgate.errors import ValidationError

SERVER = {"host": "smtp.example.com", "port": 587, "security": "starttls", "authentication": "password"}


async def _account(services: Services, name: str, username: str, senders: list[str] | None = None) -> None:
    update = EmailServerUpdate(**SERVER, username=username, password="pw")  # type: ignore[arg-type]
    await services.accounts.save_email_server(name, update, senders)


def test_senders_are_addresses_or_domains_lower_cased() -> None:
    assert parse_senders([" News@Example.COM", "*@Example.org", "news@example.com"]) == [
        "news@example.com",
        "*@example.org",
    ]
    for bad in (["news"], ["*@"], ["a@b@c"], ["*.example.com"], ["x" * 330 + "@example.com"]):
        with pytest.raises(ValidationError) as caught:
            parse_senders(bad)
        assert list(caught.value.errors) == ["senders"]


async def test_an_account_name_is_checked(services: Services) -> None:
    for bad in ("", "Reports", "-x", "a b", "x" * 65, "../etc"):
        with pytest.raises(ValidationError) as caught:
            await services.accounts.save_email_server(bad, EmailServerUpdate(**SERVER))  # type: ignore[arg-type]
        assert list(caught.value.errors) == ["account"]
    assert await services.accounts.names() == ["default"]  # nothing half-written


async def test_routing_by_from(services: Services) -> None:
    await _account(services, "default", "alice@example.com", ["*@example.com"])
    await _account(services, "reports", "reports@example.com", ["alerts@example.com"])
    await _account(services, "billing", "billing@example.org", ["*@example.com", "*@example.net"])
    await _account(services, "another", "zed@example.net", ["*@example.net"])
    route = services.accounts.route
    assert await route("Reports@Example.com", None) == "reports"  # its mailbox beats default's *@example.com
    assert await route("Alerts <ALERTS@example.com>", None) == "reports"  # an alias beats a domain
    assert await route("someone@example.com", None) == "default"  # a tie of domains: default first
    assert await route("someone@example.net", None) == "another"  # a tie without default: by name
    assert await route(None, None) == "default"
    assert await route(None, "billing") == "billing"
    assert await route("x@example.net", "billing") == "billing"
    with pytest.raises(ValidationError) as caught:
        await route("someone@example.org", None)
    assert list(caught.value.errors) == ["from"]
    with pytest.raises(ValidationError) as caught:
        await route("reports@example.com", "another")
    assert list(caught.value.errors) == ["from"]
    with pytest.raises(ValidationError) as caught:
        await route("reports@example.com", "missing")
    assert list(caught.value.errors) == ["account"]
    assert await services.accounts.may_send("billing", "BILLING@EXAMPLE.ORG")
    assert not await services.accounts.may_send("billing", "reports@example.org")
    assert not await services.accounts.may_send("missing", "billing@example.org")


async def test_accounts_that_cannot_be_checked_do_not_restrict(services: Services) -> None:
    """Nothing configured yet (its messages wait, held, until it is), or a server without authentication (the
    server decides who may send): no mailbox to compare the From with."""
    assert await services.accounts.route("anyone@example.com", None) == "default"
    open_relay = EmailServerUpdate(host="relay.internal", port=25, security="none", authentication="none")
    await services.accounts.save_email_server("relay", open_relay, ["*@example.org"])
    await _account(services, "default", "alice@example.com")
    assert await services.accounts.route("anyone@example.com", None) == "relay"
    assert await services.accounts.route("x@example.org", None) == "relay"
    assert await services.accounts.route("alice@example.com", None) == "default"


async def test_account_routes_refuse_bad_input_and_write_nothing(api: httpx.AsyncClient) -> None:
    """422 naming the field, never a 500, and no account half-created."""
    base = "/ddenterpriseapi/v2/accounts"
    cases = [
        ("put", f"{base}/reports/oauth/config", {"copy_from": "nope"}, "copy_from"),
        ("put", f"{base}/reports/oauth/config", {"copy_from": "Bad Name"}, "copy_from"),
        ("put", f"{base}/Reports/oauth/config", {"provider": "google"}, "account"),
        ("put", f"{base}/reports/email/server", {"host": "smtp.example.com", "senders": ["not an address"]}, "senders"),
        ("put", f"{base}/reports/email/server", {"host": "bad host!", "senders": ["a@example.com"]}, "host"),
    ]
    for method, path, body, field in cases:
        r = await api.request(method, path, json=body)
        assert r.status_code == 422 and field in r.json()["fields"], (path, body, r.text)
    assert [a["name"] for a in (await api.get(base)).json()] == ["default"]
    assert (await api.get(f"{base}/reports/oauth/config")).status_code == 404
    assert (await api.delete(f"{base}/reports")).status_code == 404


async def test_callers_that_find_the_policies_due_share_one_read(services: Services) -> None:
    # The SMTP relay asks at every MAIL FROM, many sessions at once: when the policies fall due (here: just
    # changed), the callers under way wait for one read instead of each reading the accounts again.
    await _account(services, "reports", "reports@example.com", ["alerts@example.com"])
    reads: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM accounts" in statement:
            reads.append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        answers = await asyncio.gather(
            *(services.accounts.may_send("reports", f"{who}@example.com") for who in ["alerts", "nobody"] * 8)
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert answers == [True, False] * 8
    assert len(reads) == 1

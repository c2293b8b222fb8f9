"""``/v2/alerts`` and ``/v2/audit``: validation (422 naming the field, nothing changed), write-only secrets,
the test alert's answer per channel, paging of the audit log."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import select

from mailgate.app import Services
from mailgate.store.models import AlertSettingsRow
from mailgate.web import create_app

from ..outbox.conftest import API
from .receiver import WebhookReceiver

PASSWORD = "fallback-Pa55word"


async def test_validation_names_the_field_and_changes_nothing(api: httpx.AsyncClient) -> None:
    good = {"webhook_url": "https://hooks.example.com/x", "email_to": ["ops@example.com"]}
    assert (await api.put(f"{API}/alerts", json=good)).status_code == 200
    before = (await api.get(f"{API}/alerts")).json()
    for body, field in (
        ({"webhook_url": "http://hooks.example.com/x"}, "webhook_url"),  # plain http off loopback
        ({"webhook_url": "ftp://hooks.example.com/x"}, "webhook_url"),
        ({"webhook_url": "hooks.example.com"}, "webhook_url"),
        ({"email_to": ["ops@example.com", "not an address"]}, "email_to"),
        ({"email_to": "ops@example.com, nope"}, "email_to"),
        ({"fallback_smtp": {"host": "smtp.example.com", "port": 0, "sender": "a@example.com"}}, "fallback_smtp.port"),
        ({"fallback_smtp": {"host": "bad host!", "sender": "a@example.com"}}, "fallback_smtp.host"),
        (
            {"fallback_smtp": {"host": "smtp.example.com", "security": "tls", "sender": "a@example.com"}},
            "fallback_smtp.security",
        ),
        ({"fallback_smtp": {"host": "smtp.example.com", "username": "relay"}}, "fallback_smtp.password"),
        ({"fallback_smtp": {"host": "smtp.example.com"}}, "fallback_smtp.sender"),
        ({"fallback_smtp": {"port": 25, "sender": "a@example.com"}}, "fallback_smtp.host"),
        ({"webhook": "https://x.example.com"}, "webhook"),  # unknown field
        ({"email_to": 5}, "email_to"),
    ):
        r = await api.put(
            f"{API}/alerts", json={**body, "webhook_url": body.get("webhook_url", "https://new.example.com")}
        )
        assert r.status_code == 422, (body, r.text)
        assert field in r.json()["fields"], (body, r.json())
    assert (await api.get(f"{API}/alerts")).json() == before


async def test_loopback_http_webhook_and_addresses_as_one_string(api: httpx.AsyncClient) -> None:
    r = await api.put(
        f"{API}/alerts", json={"webhook_url": "http://127.0.0.1:9/hook", "email_to": "a@example.com; b@example.com"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["email_to"] == ["a@example.com", "b@example.com"]
    r = await api.put(f"{API}/alerts", json={"webhook_url": "", "email_to": None})
    assert r.json() == {"webhook_url": "", "email_to": [], "fallback_smtp": None}


async def test_the_fallback_password_is_write_only(api: httpx.AsyncClient, services: Services) -> None:
    fallback = {"host": "smtp.example.com", "port": 587, "username": "alerts@example.com", "password": PASSWORD}
    r = await api.put(f"{API}/alerts", json={"email_to": ["ops@example.com"], "fallback_smtp": fallback})
    assert r.status_code == 200, r.text
    assert r.json()["fallback_smtp"] == {
        "host": "smtp.example.com",
        "port": 587,
        "security": "starttls",
        "username": "alerts@example.com",
        "sender": "alerts@example.com",
        "password_set": True,
    }
    # Kept when left out; never in an answer, the page, the audit log or the database in clear.
    r = await api.put(f"{API}/alerts", json={"fallback_smtp": {"port": 465, "security": "ssl"}})
    assert r.json()["fallback_smtp"]["password_set"] is True and r.json()["fallback_smtp"]["port"] == 465
    assert (await services.alerts.get()).fallback_smtp.password == PASSWORD  # type: ignore[union-attr]
    answers = [(await api.get(f"{API}/alerts")).text, (await api.get(f"{API}/audit")).text]
    assert all(PASSWORD not in text for text in answers)
    assert PASSWORD not in repr(await services.alerts.get())
    async with services.db.session() as session:
        row = (await session.execute(select(AlertSettingsRow))).scalar_one()
    assert PASSWORD not in json.dumps({c.name: str(getattr(row, c.name)) for c in row.__table__.columns})
    changes = [e for e in await services.audit.list() if e.action == "alerts.changed"]
    assert "fallback_smtp.password" in changes[-1].details["fields"]
    # null removes the fallback server.
    r = await api.put(f"{API}/alerts", json={"fallback_smtp": None})
    assert r.json()["fallback_smtp"] is None


async def test_test_alert_answers_per_channel(api: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    await api.put(f"{API}/alerts", json={"webhook_url": receiver.url})
    r = await api.post(f"{API}/alerts/test")
    assert r.status_code == 200, r.text
    assert r.json()["webhook"]["status"] == "failed" and "could not be reached" in r.json()["webhook"]["detail"]
    assert r.json()["email"] == {"status": "not_configured", "detail": "no email is set"}
    assert receiver.url not in r.text  # webhook URLs often hold a token
    await receiver.up()
    r = await api.post(f"{API}/alerts/test")
    assert r.json()["webhook"] == {"status": "sent", "detail": "the webhook answered HTTP 200"}
    assert [p["event"] for p in receiver.received] == ["test"]
    receiver.status = 500
    r = await api.post(f"{API}/alerts/test")
    assert r.json()["webhook"] == {"status": "failed", "detail": "the webhook answered HTTP 500"}
    # An email with no healthy account and no fallback server: said so, with what to do.
    await api.put(f"{API}/alerts", json={"email_to": ["ops@example.com"]})
    r = await api.post(f"{API}/alerts/test")
    assert r.json()["email"]["status"] == "failed" and "fallback SMTP server" in r.json()["email"]["detail"]
    recent = (await api.get(f"{API}/alerts")).json()["recent"]
    assert [n["event"] for n in recent] == ["test"] * 4
    assert recent[0]["webhook"]["state"] == "failed" and recent[-1]["webhook"]["state"] == "failed"


async def test_alerts_and_audit_require_an_administrator(services: Services) -> None:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as anonymous:
        for method, path in (("GET", "alerts"), ("PUT", "alerts"), ("POST", "alerts/test"), ("GET", "audit")):
            r = await anonymous.request(method, f"{API}/{path}", json={})
            assert r.status_code == 401, (method, path)


async def test_audit_is_newest_first_and_paged(api: httpx.AsyncClient, services: Services) -> None:
    for i in range(5):
        await services.audit.record("test.entry", n=i)
    page = (await api.get(f"{API}/audit", params={"limit": 2})).json()
    assert [e["details"]["n"] for e in page["items"]] == [4, 3]
    page = (await api.get(f"{API}/audit", params={"limit": 2, "before": page["next_before"]})).json()
    assert [e["details"]["n"] for e in page["items"]] == [2, 1]
    page = (await api.get(f"{API}/audit", params={"limit": 2, "before": page["next_before"]})).json()
    assert [e["details"]["n"] for e in page["items"]] == [0] and page["next_before"] is None
    assert page["items"][0]["action"] == "test.entry" and page["items"][0]["at"]
    for params, field in (({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"before": 0}, "before")):
        r = await api.get(f"{API}/audit", params=params)
        assert r.status_code == 422 and field in r.json()["fields"], r.text

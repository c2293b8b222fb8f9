"""Relay users through the REST API, the CLI and the Relay page; the relay's counters in /metrics."""

from __future__ import annotations

import dataclasses
import json
import re

import httpx
from typer.testing import CliRunner

from mailgate.app import Services, build_services
from mailgate.cli.main import app as cli
from mailgate.config import RelaySettings, Settings
from mailgate.relay import load_certificate
from mailgate.web import create_app

from ..conftest import ADMIN_PASSWORD
from ..web.conftest import login

API = "/ddenterpriseapi/v2"


async def test_rest_create_list_delete(api: httpx.AsyncClient, services: Services) -> None:
    r = await api.post(f"{API}/relay/users", json={"name": "grafana", "senders": ["alerts@example.com"]})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["username"] == "grafana" and len(created["password"]) >= 40
    assert created["account"] == "default" and created["senders"] == ["alerts@example.com"]
    assert await services.relay_users.authenticate("grafana", created["password"]) is not None

    listed = (await api.get(f"{API}/relay/users")).json()["items"]
    assert [u["name"] for u in listed] == ["grafana"]
    assert "password" not in json.dumps(listed) and created["password"] not in json.dumps(listed)
    assert listed[0]["last_used_at"] is not None  # the login above

    assert (await api.delete(f"{API}/relay/users/grafana")).status_code == 204
    assert (await api.get(f"{API}/relay/users")).json()["items"] == []
    assert await services.relay_users.authenticate("grafana", created["password"]) is None
    assert (await api.delete(f"{API}/relay/users/grafana")).status_code == 404


async def test_rest_bad_input_is_422_and_stores_nothing(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/relay/users", json={"name": "bad name", "account": "nope", "senders": ["x"]})
    assert r.status_code == 422
    assert set(r.json()["fields"]) == {"name", "account", "senders"}
    assert (await api.post(f"{API}/relay/users", json={"name": "a"})).status_code == 201
    r = await api.post(f"{API}/relay/users", json={"name": "a"})
    assert r.status_code == 422 and "already" in r.json()["fields"]["name"]
    assert len((await api.get(f"{API}/relay/users")).json()["items"]) == 1


async def test_rest_requires_admin(services: Services) -> None:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as anonymous:
        assert (await anonymous.get(f"{API}/relay/users")).status_code == 401
        assert (await anonymous.post(f"{API}/relay/users", json={"name": "x"})).status_code == 401


async def test_metrics_count_relay_events(api: httpx.AsyncClient, services: Services) -> None:
    services.relay_metrics.sessions += 3
    services.relay_metrics.logins_failed += 2
    text = (await api.get("/metrics")).text
    assert "mailgate_relay_sessions_total 3" in text and "mailgate_relay_logins_failed_total 2" in text
    assert "mailgate_relay_messages_accepted_total 0" in text


def test_cli_add_list_remove(settings: Settings) -> None:
    runner = CliRunner()
    base = ["--data-dir", str(settings.data_dir)]
    added = runner.invoke(cli, ["relay", "user", "add", "printer", "--sender", "scan@example.com", "--json", *base])
    assert added.exit_code == 0, added.output
    answer = json.loads(added.output)
    assert answer["username"] == "printer" and len(answer["password"]) >= 40
    listed = runner.invoke(cli, ["relay", "user", "list", *base])
    assert "printer" in listed.output and "scan@example.com" in listed.output and "never" in listed.output
    assert answer["password"] not in listed.output
    again = runner.invoke(cli, ["relay", "user", "add", "printer", *base])
    assert again.exit_code == 1 and "already" in again.output
    assert runner.invoke(cli, ["relay", "user", "remove", "printer", *base]).exit_code == 0
    assert runner.invoke(cli, ["relay", "user", "remove", "printer", *base]).exit_code == 1
    assert "0 relay user(s)" in runner.invoke(cli, ["relay", "user", "list", *base]).output


async def test_relay_page_adds_shows_password_once_and_removes(services: Services) -> None:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as browser:
        await login(browser)
        page = await browser.get("/ddenterpriseapi/configuration/relay")
        assert page.status_code == 200 and "The relay is off" in page.text
        assert 'href="/ddenterpriseapi/configuration/relay"' in page.text  # in the Configuration menu
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        form = {"csrf_token": token.group(1), "action": "add", "name": "erp", "account": "default", "senders": ""}
        added = await browser.post("/ddenterpriseapi/configuration/relay", data=form)
        assert added.status_code == 200
        shown = re.search(r'id="created-password">([^<]+)<', added.text)
        assert shown is not None and await services.relay_users.authenticate("erp", shown.group(1)) is not None
        again = await browser.get("/ddenterpriseapi/configuration/relay")
        assert shown.group(1) not in again.text and "erp" in again.text
        bad = await browser.post("/ddenterpriseapi/configuration/relay", data={**form, "name": "no spaces"})
        assert bad.status_code == 422 and "User name must be" in bad.text
        removed = await browser.post(
            "/ddenterpriseapi/configuration/relay",
            data={"csrf_token": token.group(1), "action": "remove", "name": "erp"},
        )
        assert removed.status_code == 303
        assert await services.relay_users.list() == []


async def test_relay_page_shows_the_settings_and_fingerprint(settings: Settings) -> None:
    relay = RelaySettings(port=2525, host="127.0.0.1", tls_port=4650)
    services = await build_services(dataclasses.replace(settings, relay=relay))
    try:
        await services.admins.ensure_admin(ADMIN_PASSWORD)
        certificate = load_certificate(relay, settings.data_dir)  # as `mailgate serve` does at start
        assert certificate is not None and certificate.generated
        assert (settings.data_dir / "relay-key.pem").stat().st_mode & 0o777 == 0o600
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as browser:
            await login(browser)
            page = (await browser.get("/ddenterpriseapi/configuration/relay")).text
        assert f'id="relay-fingerprint">{certificate.fingerprint}<' in page
        assert 'id="relay-port">2525<' in page and 'id="relay-tls-port">4650<' in page
        assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", certificate.fingerprint)
        # Generated once: the next start serves the same certificate.
        assert load_certificate(relay, settings.data_dir) == certificate
    finally:
        await services.aclose()

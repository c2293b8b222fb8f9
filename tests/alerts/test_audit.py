"""The audit log records who did what through the REST API, the admin pages and the CLI, never a secret."""

from __future__ import annotations

import base64
import json

import httpx
from typer.testing import CliRunner

from mailgate.app import Services, build_services
from mailgate.cli.main import app as cli
from mailgate.config import Settings
from mailgate.web import create_app

from ..conftest import ADMIN_PASSWORD
from ..e2e.harness import SECRET
from ..outbox.conftest import API, SandboxEnv
from ..web.conftest import UI, csrf_of, form_token, login

ALERTS_PAGE = f"{UI}/configuration/alerts"
RELAY_PAGE = f"{UI}/configuration/relay"


async def _entries(services: Services) -> list[tuple[str, str, str]]:
    """(actor, action, account) of every entry, oldest first."""
    return [(e.actor, e.action, e.account) for e in reversed(await services.audit.list(limit=500))]


async def test_api_actions_are_recorded_with_the_api_key(sandbox_env: SandboxEnv) -> None:
    env, h = sandbox_env.env, sandbox_env.harness
    services = env.services
    assert (await h.authorize()).status_code == 200
    denied = await h.consent(accept=False)
    assert (await env.api.get(denied, headers={"Accept": "application/json"})).status_code == 400
    assert (await env.api.post(f"{API}/oauth/disconnect")).status_code == 200
    server = {"host": "smtp.example.com", "port": 587, "authentication": "password", "username": "b@example.com"}
    r = await env.api.put(f"{API}/accounts/branch/email/server", json={**server, "password": "branch-Pa55"})
    assert r.status_code == 200, r.text
    assert (await env.api.delete(f"{API}/accounts/branch")).status_code == 200
    assert (await env.api.post(f"{API}/relay/users", json={"name": "grafana"})).status_code == 201
    assert (await env.api.delete(f"{API}/relay/users/grafana")).status_code == 204
    assert (await env.api.put(f"{API}/alerts", json={"email_to": ["ops@example.com"]})).status_code == 200

    entries = await _entries(services)
    assert [(a, acc) for _, a, acc in entries if not a.startswith("api_key")] == [
        ("oauth_config.changed", "default"),  # harness.configure, in the fixture
        ("email_server.changed", "default"),
        ("authorization.succeeded", "default"),
        ("authorization.failed", "default"),
        ("authorization.disconnected", "default"),
        ("email_server.changed", "branch"),
        ("account.created", "branch"),
        ("account.deleted", "branch"),  # it had no consent to disconnect
        ("relay_user.added", "default"),
        ("relay_user.removed", ""),
        ("alerts.changed", ""),
    ]
    assert {actor for actor, action, _ in entries if not action.startswith("api_key")} == {"API key"}
    full = [e.to_dict() for e in await services.audit.list(limit=500)]
    by_action = {e["action"]: e["details"] for e in full}
    assert "client_secret" in by_action["oauth_config.changed"]["fields"]
    assert by_action["authorization.succeeded"]["mailbox"] == "alice@sandbox.test"
    assert by_action["authorization.failed"]["error"] == "access_denied"
    branch_server = next(e for e in full if e["account"] == "branch" and e["action"] == "email_server.changed")
    assert {"host", "password", "username"} <= set(branch_server["details"]["fields"])
    text = json.dumps(full)
    assert SECRET not in text and "branch-Pa55" not in text


async def test_page_actions_and_sign_ins_are_recorded_with_the_user(web: httpx.AsyncClient, services: Services) -> None:
    assert (await login(web, "wrong password")).status_code == 401
    assert (await login(web)).status_code == 303
    token = await form_token(web, RELAY_PAGE)
    r = await web.post(RELAY_PAGE, data={"csrf_token": token, "action": "add", "name": "printer", "account": "default"})
    assert r.status_code == 200, r.text
    token = await form_token(web, RELAY_PAGE)
    r = await web.post(RELAY_PAGE, data={"csrf_token": token, "action": "remove", "name": "printer"})
    assert r.status_code == 303
    token = await form_token(web, ALERTS_PAGE)
    r = await web.post(
        ALERTS_PAGE, data={"csrf_token": token, "action": "save", "webhook_url": "https://h.example.com/x"}
    )
    assert r.status_code == 303, r.text
    basic = {"Authorization": "Basic " + base64.b64encode(b"admin:not-it").decode()}
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080", headers=basic) as other:
        assert (await other.get(f"{API}/alerts")).status_code == 401
    assert await _entries(services) == [
        ("anonymous", "login.failed", ""),
        ("user admin", "login.succeeded", ""),
        ("user admin", "relay_user.added", "default"),
        ("user admin", "relay_user.removed", ""),
        ("user admin", "alerts.changed", ""),
        ("anonymous", "login.failed", ""),
    ]
    failed = [e for e in await services.audit.list() if e.action == "login.failed"]
    assert [e.details["via"] for e in failed] == ["HTTP Basic", "login form"]
    assert "wrong password" not in json.dumps([e.to_dict() for e in await services.audit.list()])
    # The Audit log page shows them, newest first.
    page = await web.get(f"{UI}/configuration/audit")
    assert page.status_code == 200 and page.text.index("alerts.changed") < page.text.index("relay_user.added")
    assert csrf_of(page.text)


def test_cli_actions_are_recorded_with_the_cli_user(settings: Settings) -> None:
    runner = CliRunner()
    base = ["--data-dir", str(settings.data_dir)]
    assert runner.invoke(cli, ["relay", "user", "add", "scanner", *base]).exit_code == 0
    configured = runner.invoke(
        cli,
        ["oauth", "configure", "--provider", "google", "--client-id", "cid", "--client-secret", "cli-Secret-1", *base],
    )
    assert configured.exit_code == 0, configured.output
    assert runner.invoke(cli, ["relay", "user", "remove", "scanner", *base]).exit_code == 0

    async def entries() -> list[dict[str, object]]:
        services = await build_services(settings)
        try:
            return [e.to_dict() for e in reversed(await services.audit.list())]
        finally:
            await services.aclose()

    import asyncio

    found = asyncio.run(entries())
    assert [e["action"] for e in found] == ["relay_user.added", "oauth_config.changed", "relay_user.removed"]
    assert all(str(e["actor"]).startswith("CLI (") for e in found)
    assert "cli-Secret-1" not in json.dumps(found)


async def test_admin_password_and_api_keys_are_recorded(services: Services) -> None:
    await services.admins.ensure_admin(ADMIN_PASSWORD)  # unchanged at a restart: nothing to record
    await services.admins.ensure_admin("another admin password")
    key = await services.admins.create_api_key("grafana")
    await services.admins.delete_api_key(key.id)
    entries = [(e.actor, e.action, e.details) for e in reversed(await services.audit.list())]
    assert entries == [
        ("MAILGATE_ADMIN_PASSWORD", "admin.password_changed", {"user": "admin"}),
        ("anonymous", "api_key.created", {"id": key.id, "name": "grafana", "prefix": key.key[:10]}),
        ("anonymous", "api_key.deleted", {"id": key.id}),
    ]
    assert key.key not in json.dumps([e.to_dict() for e in await services.audit.list()])

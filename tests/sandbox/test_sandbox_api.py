"""The public API of mailgate.sandbox, its configuration, and the providers file it generates."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import mailgate.sandbox
from mailgate.providers import bundled_catalogue_text, load_catalogue
from mailgate.sandbox import Sandbox, SandboxClient, SandboxConfig, run_forever

from .helpers import SandboxFactory


def test_public_api_is_pinned() -> None:
    assert sorted(mailgate.sandbox.__all__) == ["Sandbox", "SandboxClient", "SandboxConfig", "run_forever"]
    for name in mailgate.sandbox.__all__:
        assert getattr(mailgate.sandbox, name).__doc__
    assert callable(run_forever)


def test_default_config_matches_the_bundled_sandbox_provider() -> None:
    config = SandboxConfig()
    spec = load_catalogue(bundled_catalogue_text()).get("sandbox")
    assert spec.authorization_url_for("") == f"http://{config.host}:{config.http_port}/sandbox/oauth2/v2.0/authorize"
    assert spec.token_url_for("") == f"http://{config.host}:{config.http_port}/sandbox/oauth2/v2.0/token"
    assert (spec.smtp_host, spec.smtp_port) == (config.host, config.smtp_port)
    client = config.clients[0]
    assert (client.client_id, client.client_secret) == ("sandbox-client", "sandbox-secret")
    assert client.redirect_uris == ("http://localhost:8080/ddenterpriseapi/v2/oauth/redirect",)
    assert config.default_account == "user@sandbox.test"
    assert config.rotate_refresh_tokens is True


def test_config_is_frozen_and_validated() -> None:
    config = SandboxConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.http_port = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="smtp_failure_style"):
        SandboxConfig(smtp_failure_style="yahoo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="access_token_lifetime"):
        SandboxConfig(access_token_lifetime=0)
    with pytest.raises(ValueError, match="unique"):
        SandboxConfig(clients=(SandboxClient("a", "s", ("http://localhost/",)),) * 2)


def test_secrets_stay_out_of_reprs() -> None:
    client = SandboxClient("id", "very-secret", ["http://localhost/cb"])
    assert "very-secret" not in repr(client)
    assert client.redirect_uris == ("http://localhost/cb",)
    assert "pw" not in repr(SandboxConfig(smtp_password_users={"a@b.test": "pw"}))


async def test_ports_zero_pick_free_ports(sandbox: Sandbox) -> None:
    assert sandbox.http_port > 0 and sandbox.smtp_port > 0
    assert sandbox.base_url == f"http://127.0.0.1:{sandbox.http_port}"
    assert sandbox.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")


async def test_providers_toml_points_bundled_and_new_providers_here(sandbox: Sandbox) -> None:
    text = sandbox.providers_toml("microsoft", "google", "mytest")
    catalogue = load_catalogue(bundled_catalogue_text(), text, "sandbox providers")
    base = sandbox.base_url
    microsoft = catalogue.get("microsoft")
    assert microsoft.authorization_url_for("contoso.onmicrosoft.com") == (
        f"{base}/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
    )
    assert microsoft.token_url_for("") == f"{base}/organizations/oauth2/v2.0/token"
    assert microsoft.scopes[0] == "https://outlook.office.com/SMTP.Send"  # untouched fields stay
    google = catalogue.get("google")
    assert (google.authorization_url, google.token_url) == (f"{base}/o/oauth2/v2/auth", f"{base}/token")
    assert google.revocation_url == f"{base}/revoke"
    for name in ("sandbox", "microsoft", "google", "mytest"):
        spec = catalogue.get(name)
        assert (spec.smtp_host, spec.smtp_port, spec.smtp_security) == ("127.0.0.1", sandbox.smtp_port, "starttls")
    assert catalogue.get("sandbox").token_url_for("") == f"{base}/sandbox/oauth2/v2.0/token"
    assert catalogue.get("mytest").scopes
    with pytest.raises(ValueError, match="provider name"):
        sandbox.providers_toml("Not A Name")


async def test_state_dir_files(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = await make_sandbox(state_dir=state_dir)
    info = json.loads((state_dir / "sandbox.json").read_text())
    assert info["http_port"] == first.http_port and info["smtp_port"] == first.smtp_port
    assert info["ca_file"] == str(state_dir / "sandbox-ca.pem") == str(first.ca_file)
    assert f"smtp_port = {first.smtp_port}" in (state_dir / "providers.toml").read_text()
    assert (state_dir / "sandbox-ca-key.pem").stat().st_mode & 0o077 == 0
    ca_pem = first.ca_file.read_bytes()
    await first.stop()
    # A restart with the same state dir keeps the CA, so a ca_file configured in mailgate keeps working.
    second = await make_sandbox(state_dir=state_dir)
    assert second.ca_file.read_bytes() == ca_pem
    assert state_dir.is_dir()


async def test_temporary_state_dir_is_removed_on_stop(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox()
    state_dir = sandbox.state_dir
    assert state_dir.is_dir()
    await sandbox.stop()
    assert not state_dir.exists()
    with pytest.raises(RuntimeError, match="not running"):
        _ = sandbox.http_port


async def test_describe_names_urls_credentials_and_ca_file(sandbox: Sandbox) -> None:
    text = sandbox.describe()
    for expected in (
        f"{sandbox.base_url}/{{tenant}}/oauth2/v2.0/authorize",
        f"127.0.0.1:{sandbox.smtp_port}",
        "sandbox-client",
        "sandbox-secret",
        str(sandbox.ca_file),
    ):
        assert expected in text

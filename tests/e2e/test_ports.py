"""mailgate and its sandbox on ports other than the defaults: the redirect URI follows (issue 19.3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from ..sandbox.helpers import MS_SCOPE, pkce_pair
from .test_cli import _free_port, _read_until, _start, _stop

REDIRECT_PATH = "/ddenterpriseapi/v2/oauth/redirect"


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    return {**env, "MAILGATE_DATA_DIR": str(tmp_path / "data"), **extra}


async def _sandbox_accepts(tmp_path: Path, redirect_uri: str, *args: str, env: dict[str, str]) -> httpx.Response:
    """Start ``mailgate sandbox`` with ``args``; its answer to an authorization request for ``redirect_uri``."""
    state_dir = tmp_path / f"sandbox-{len(list(tmp_path.glob('sandbox-*')))}"
    proc = await _start(
        "sandbox", "--http-port", "0", "--smtp-port", "0", "--state-dir", str(state_dir), *args, env=env
    )
    try:
        await _read_until(proc, "Press Ctrl+C")
        base_url = json.loads((state_dir / "sandbox.json").read_text())["base_url"]
        _, challenge = pkce_pair()
        params = {
            "client_id": "sandbox-client",
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": MS_SCOPE,
            "state": "s-1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        async with httpx.AsyncClient(base_url=base_url) as client:
            return await client.get("/sandbox/oauth2/v2.0/authorize", params=params)
    finally:
        await _stop(proc)


async def test_serve_on_another_port_derives_its_redirect_uri_from_it(tmp_path: Path) -> None:
    port = _free_port()
    proc = await _start("serve", "--port", str(port), env=_clean_env(tmp_path, MAILGATE_ADMIN_PASSWORD="pw-1"))
    try:
        printed = "".join(await _read_until(proc, "redirect URI"))
    finally:
        await _stop(proc)
    assert f"http://localhost:{port}{REDIRECT_PATH}" in printed, printed
    assert "8080" not in printed


async def test_base_url_still_wins_over_the_port(tmp_path: Path) -> None:
    port = _free_port()
    env = _clean_env(tmp_path, MAILGATE_ADMIN_PASSWORD="pw-1", MAILGATE_BASE_URL="https://mail.example.com")
    proc = await _start("serve", "--port", str(port), env=env)
    try:
        printed = "".join(await _read_until(proc, "redirect URI"))
    finally:
        await _stop(proc)
    assert f"https://mail.example.com{REDIRECT_PATH}" in printed


@pytest.mark.parametrize(
    ("args", "extra_env", "accepted"),
    [
        ((), {}, f"http://localhost:8080{REDIRECT_PATH}"),
        (("--redirect-uri", f"http://localhost:8091{REDIRECT_PATH}"), {}, f"http://localhost:8091{REDIRECT_PATH}"),
        ((), {"MAILGATE_SANDBOX_REDIRECT_URI": f"http://localhost:8092{REDIRECT_PATH}"}, "8092"),
        ((), {"MAILGATE_BASE_URL": "http://localhost:8093"}, f"http://localhost:8093{REDIRECT_PATH}"),
    ],
    ids=["default", "option", "variable", "base-url"],
)
async def test_the_sandbox_accepts_the_configured_redirect_uri(
    tmp_path: Path, args: tuple[str, ...], extra_env: dict[str, str], accepted: str
) -> None:
    accepted = accepted if accepted.startswith("http") else f"http://localhost:{accepted}{REDIRECT_PATH}"
    env = _clean_env(tmp_path, **extra_env)
    ok = await _sandbox_accepts(tmp_path, accepted, *args, env=env)
    assert ok.status_code == 200 and 'name="consent_id"' in ok.text, ok.text
    other = f"http://localhost:8099{REDIRECT_PATH}"
    refused = await _sandbox_accepts(tmp_path, other, *args, env=env)
    assert refused.status_code == 400 and "redirect_uri_mismatch" in refused.text
    assert other in refused.text and accepted in refused.text  # what it got, what it expected
    assert "--redirect-uri" in refused.text and "MAILGATE_SANDBOX_REDIRECT_URI" in refused.text

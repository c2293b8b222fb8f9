"""The README's "Trying it with the sandbox" of the app-only identities, run with bash after the walkthrough it
builds on (the sandbox and mailgate it starts), on free ports: client credentials with the sandbox secret, then
with a certificate the sandbox made, then a service account's JSON key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from .test_readme import README, _blocks, _section, walkthrough

SECTION = "### Trying it with the sandbox"


def app_only_script() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION + "\n")
    blocks = _blocks(_section(text[start:], SECTION), "sh")
    assert len(blocks) == 2, "the app-only sandbox section lost its command blocks"
    return "\n".join(blocks)


async def test_the_readme_app_only_commands_run_as_pasted(tmp_path: Path) -> None:
    async with walkthrough(tmp_path, app_only_script()) as run:
        output, http, sandbox_url, env, venv = run.output, run.http, run.sandbox_url, run.env, run.venv
        assert '"name":"auth","ok":true,"detail":"XOAUTH2 as user@sandbox.test' in output, output
        api = f"http://localhost:{http}/ddenterpriseapi/v2/accounts"
        async with httpx.AsyncClient(timeout=10, auth=("admin", "admin-pass")) as client:
            app = (await client.get(f"{api}/app/oauth/config")).json()
            assert app["grant"] == "client_credentials" and app["certificate_set"] is True, output
            assert app["client_secret_set"] is False  # the certificate replaced the secret
            assert app["token_status"] == "not_authorized"  # the new credential gets the next token
            workspace = (await client.get(f"{api}/workspace/oauth/config")).json()
            assert workspace["grant"] == "service_account" and workspace["service_account_email"], output
            inbox = (await client.get(f"{sandbox_url}/inbox.json")).json()
            assert any(m["rcpt_tos"] == ["someone@example.com"] and m["account"] == "user@sandbox.test" for m in inbox)
            # A new process (no cached token) sends with the certificate's signed assertion.
            tested = await asyncio.create_subprocess_exec(
                str(venv / "bin" / "mailgate"), "email", "test", "--account", "app", cwd=tmp_path, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            result = (await asyncio.wait_for(tested.communicate(), 120))[0].decode()
            assert tested.returncode == 0 and "PASS auth" in result, result
            stats = (await client.get(f"{sandbox_url}/_control/stats")).json()
            assert stats["tokens_issued"]["client_credentials"] == 2, stats

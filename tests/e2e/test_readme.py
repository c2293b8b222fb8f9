"""The README's sandbox walkthrough and its JSON message example, run with bash as a user pastes them.

The command blocks are read from README.md (so the test follows every edit of them) and run in one shell
in a temporary directory, with only the ports changed to free ones (issue 19.7).  Then the messages they
sent must be in the sandbox's inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..conftest import require_component
from .test_cli import _free_port

README = Path(__file__).resolve().parents[2] / "README.md"
WALKTHROUGH = "## Try the whole flow without a Google or Microsoft account"
OUTBOX = "## Outbox and messages API"
REDIRECT_PATH = "/ddenterpriseapi/v2/oauth/redirect"


def _section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else len(text)]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", section, re.S | re.M)


def readme_script() -> str:
    """The walkthrough's ``sh`` blocks, then the Outbox section's JSON message example, as one script."""
    text = README.read_text(encoding="utf-8")
    walkthrough = _blocks(_section(text, WALKTHROUGH), "sh")
    assert len(walkthrough) >= 3, "the walkthrough lost its command blocks"
    [example] = [b for b in _blocks(_section(text, OUTBOX), "bash") if "/email/messages -d '{" in b]
    return "\n".join([*walkthrough, example])


def with_ports(script: str, http: int, sandbox_http: int, sandbox_smtp: int) -> str:
    """The script on free ports: the README's 8080, 8765 and 8587 replaced, each command told its port."""
    ports = {"8080": str(http), "8765": str(sandbox_http), "8587": str(sandbox_smtp)}
    script = re.sub(r"\b(8080|8765|8587)\b", lambda m: ports[m.group(1)], script)
    sandbox = ".venv/bin/mailgate sandbox"
    serve = ".venv/bin/mailgate serve"
    assert script.count(sandbox) == 1 and script.count(serve) == 1, script
    script = script.replace(sandbox, f"{sandbox} --http-port {sandbox_http} --smtp-port {sandbox_smtp}")
    return script.replace(serve, f"{serve} --port {http}")


async def _end_group(proc: asyncio.subprocess.Process) -> None:
    """Stop the shell and everything it started in the background (one process group), bounded."""
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        for _ in range(int(wait * 10)):
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.1)
        else:
            continue
        break
    with contextlib.suppress(ProcessLookupError):
        await asyncio.wait_for(proc.wait(), 10)


@dataclass
class Walkthrough:
    """The README's commands run by bash on free ports: their output, mailgate's and the sandbox's URLs."""

    output: str
    http: int
    sandbox_url: str
    env: dict[str, str]
    venv: Path


@contextlib.asynccontextmanager
async def walkthrough(tmp_path: Path, extra: str = "") -> AsyncIterator[Walkthrough]:
    """Run the walkthrough (then ``extra``, more README commands) as pasted; the processes it started are
    stopped on exit."""
    require_component(shutil.which("curl") is not None, "curl")
    venv = Path(sys.prefix)
    require_component((venv / "bin" / "mailgate").exists(), "mailgate installed in the test's virtual environment")
    http, sandbox_http, sandbox_smtp = _free_port(), _free_port(), _free_port()
    (tmp_path / ".venv").symlink_to(venv)
    providers = tmp_path / "sandbox-ports.toml"  # the bundled sandbox provider, on the free ports
    sandbox_url = f"http://127.0.0.1:{sandbox_http}"
    providers.write_text(
        "[providers.sandbox]\n"
        f'authorization_url = "{sandbox_url}/{{tenant}}/oauth2/v2.0/authorize"\n'
        f'token_url = "{sandbox_url}/{{tenant}}/oauth2/v2.0/token"\n'
        f'revocation_url = "{sandbox_url}/revoke"\n'
        f"smtp_port = {sandbox_smtp}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env["MAILGATE_PROVIDERS_FILE"] = str(providers)
    env["MAILGATE_SANDBOX_REDIRECT_URI"] = f"http://localhost:{http}{REDIRECT_PATH}"
    script = tmp_path / "readme.sh"
    script.write_text(with_ports(readme_script() + "\n" + extra, http, sandbox_http, sandbox_smtp))
    log = tmp_path / "readme.log"
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            "bash", str(script), cwd=tmp_path, env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        await asyncio.wait_for(proc.wait(), 240)  # its own waits are bounded (one minute)
        output = log.read_text()
        assert proc.returncode == 0, output
        yield Walkthrough(output, http, sandbox_url, env, venv)
    finally:
        await _end_group(proc)


async def test_the_readme_sandbox_walkthrough_runs_as_pasted(tmp_path: Path) -> None:
    async with walkthrough(tmp_path) as run:
        output, http, sandbox_url = run.output, run.http, run.sandbox_url
        async with httpx.AsyncClient(timeout=10) as client:
            config = await client.get(
                f"http://localhost:{http}/ddenterpriseapi/v2/oauth/config", auth=("admin", "admin-pass")
            )
            assert config.json()["refresh_token_set"] is True, output
            assert config.json()["account"] == "user@sandbox.test"
            # The messages example was accepted; the worker delivers it soon after (bounded wait).
            accepted = json.loads(output.strip().splitlines()[-1])
            assert accepted["status"] == "queued", output
            subjects: list[str] = []
            for _ in range(300):
                inbox = (await client.get(f"{sandbox_url}/inbox.json")).json()
                subjects = [m["subject"] for m in inbox]
                if "Your order" in subjects:
                    break
                await asyncio.sleep(0.2)
            assert "Hello" in subjects, (subjects, output)  # mailgate send
            assert len(subjects) == 3, (subjects, output)  # and the connection test's message
            order = next(m for m in inbox if m["subject"] == "Your order")
            assert order["mail_from"] == "user@sandbox.test" and order["rcpt_tos"] == ["bob@example.com"]
            assert "invoice.txt" in order["raw"]
    assert not (tmp_path / "mailgate-data" / "mailgate.db-wal").exists()  # serve stopped and closed its database

"""``python -m mailgate.sandbox`` (run_forever) as a subprocess, driven through the control endpoints."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import httpx


async def test_run_forever_in_a_subprocess(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailgate.sandbox",
        "--http-port",
        "0",
        "--smtp-port",
        "0",
        "--state-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        banner: list[str] = []
        # Wait for the readiness line (event-driven: readline returns when the process prints it).
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
            assert line, f"the sandbox exited early:\n{''.join(banner)}"
            banner.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        text = "".join(banner)
        info = json.loads((tmp_path / "sandbox.json").read_text())
        assert info["base_url"] in text and "sandbox-secret" in text and info["ca_file"] in text
        assert "MAILGATE_PROVIDERS_FILE=" in text  # not the default ports
        async with httpx.AsyncClient(base_url=info["base_url"]) as http:
            assert (await http.post("/_control/token-endpoint", params={"available": "false"})).status_code == 200
            down = await http.post("/sandbox/oauth2/v2.0/token", data={"grant_type": "refresh_token"})
            assert down.status_code == 503
            minted = (await http.post("/_control/tokens", params={"account": "x@sandbox.test"})).json()
            assert len(minted["access_token"]) >= 2100
            stats = (await http.get("/_control/stats")).json()
            assert stats["token_requests"]["refresh_token"] == 1
            assert stats["token_endpoint_available"] is False
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=60)
    assert code == 0
    assert Path(info["ca_file"]).is_file()

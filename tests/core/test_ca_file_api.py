"""PUT /email/server refuses a ca_file that is not a small regular PEM file, without blocking (issue 20 point 9).

Before, the check opened the path on the event loop: a FIFO held every request (``/healthz`` included)
until something wrote to it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import trustme

from mailgate.smtp.tls import CA_FILE_MAX_BYTES

from ..smtp.fifo import WatchedFifo

API = "/ddenterpriseapi/v2"
SERVER = {
    "host": "smtp.office365.com",
    "port": 587,
    "security": "starttls",
    "authentication": "oauth",
    "username": "reports@contoso.com",
    "sender": "reports@contoso.com",
}


async def test_a_fifo_is_refused_and_healthz_answers_meanwhile(api: httpx.AsyncClient, tmp_path: Path) -> None:
    with WatchedFifo(tmp_path / "ca.pem") as fifo:
        put, health = await asyncio.gather(
            api.put(f"{API}/email/server", json={**SERVER, "ca_file": str(fifo.path)}), api.get("/healthz")
        )
    assert not fifo.opened  # nothing waited on the pipe
    assert put.status_code == 422, put.text
    assert "named pipe (FIFO), not a regular file" in put.json()["fields"]["ca_file"]
    assert health.status_code == 200
    assert (await api.get(f"{API}/email/server")).json()["host"] == ""  # nothing was saved


@pytest.mark.parametrize("kind", ["directory", "huge", "not PEM"])
async def test_other_unusable_ca_files_are_422_with_what_to_do(
    api: httpx.AsyncClient, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "ca.pem"
    if kind == "directory":
        path.mkdir()
        expected = "is a directory, not a regular file"
    elif kind == "huge":
        with path.open("wb") as file:
            file.truncate(CA_FILE_MAX_BYTES + 1)
        expected = "more than a CA file holds (at most 1,048,576)"
    else:
        path.write_text("hello\n")
        expected = "holds no PEM certificate"
    put = await api.put(f"{API}/email/server", json={**SERVER, "ca_file": str(path)})
    assert put.status_code == 422, put.text
    problem = put.json()["fields"]["ca_file"]
    assert expected in problem and "Set ca_file to the PEM file of the CA" in problem


async def test_a_good_ca_file_is_saved(api: httpx.AsyncClient, tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    put = await api.put(f"{API}/email/server", json={**SERVER, "ca_file": str(path)})
    assert put.status_code == 200, put.text
    assert put.json()["ca_file"] == str(path)

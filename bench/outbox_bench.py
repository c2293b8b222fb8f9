"""Outbox benchmark (not a test): the raw SMTP ceiling vs the full path API -> outbox -> SMTP.

Run: ``.venv/bin/python bench/outbox_bench.py [--messages 2000] [--queued 10000] [--database-url URL]``

In one run, against the same sandbox XOAUTH2 SMTP sink on loopback (in a child process, so that its inbox
does not count in this process's memory):

1. ceiling: aiosmtplib sending pre-built messages over the pool's number of connections (3), each
   authenticated once with XOAUTH2;
2. full path: messages POSTed to the API (in-process ASGI, 16 concurrent clients) while the worker runs,
   until the last is recorded ``sent``;
3. token endpoint calls per 1,000 messages during 2 (with the access token expiring mid-run);
4. peak RSS of this process after queueing ``--queued`` messages and delivering them all.

Prints messages/second of 1 and 2 and their ratio; shared machines are noisy, so compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import resource
import ssl
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import Clock, Harness  # noqa: E402

from mailgate.app import build_services  # noqa: E402
from mailgate.config import Settings  # noqa: E402
from mailgate.outbox import Worker  # noqa: E402
from mailgate.sandbox import Sandbox, SandboxConfig  # noqa: E402
from mailgate.web import create_app  # noqa: E402

CONNECTIONS = 3
PASSWORD = "bench admin password"


def _sandbox_child(conn: Any, state_dir: str) -> None:
    async def main() -> None:
        sandbox = Sandbox(SandboxConfig(http_port=0, smtp_port=0, state_dir=Path(state_dir)))
        await sandbox.start()
        conn.send(
            {
                "base_url": sandbox.base_url,
                "smtp_port": sandbox.smtp_port,
                "ca_file": str(sandbox.ca_file),
                "providers": sandbox.providers_toml("microsoft", "google"),
            }
        )
        await asyncio.Event().wait()

    asyncio.run(main())


class RemoteSandbox:
    """The bits of Sandbox the e2e Harness uses, for a sandbox in another process."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.base_url: str = facts["base_url"]
        self.smtp_port: int = facts["smtp_port"]
        self.ca_file = Path(facts["ca_file"])
        self.providers: str = facts["providers"]

    async def control(self, path: str, **params: str) -> Any:
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            r = await client.post(f"/_control/{path}", params=params)
            r.raise_for_status()
            return r.json() if r.content else None

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            return dict((await client.get("/_control/stats")).json())


def _peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM; ru_maxrss would include the parent's before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _reset_postgres(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM outbox_messages"))
    await engine.dispose()


def _message(i: int, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = f"r{i}@example.com"
    message["Subject"] = f"bench {i}"
    message["Message-ID"] = f"<bench-{i}@sandbox.test>"
    message.set_content("Hello from the benchmark.\n" * 20)
    return message


async def ceiling(sandbox: RemoteSandbox, count: int) -> float:
    """Messages/second of plain aiosmtplib over CONNECTIONS authenticated connections."""
    tokens = await sandbox.control("tokens", account="alice@sandbox.test", client_id="sandbox-client")
    token = tokens["access_token"]
    context = ssl.create_default_context(cafile=str(sandbox.ca_file))
    messages = [_message(i, "alice@sandbox.test") for i in range(count)]
    clients = []
    for _ in range(CONNECTIONS):
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sandbox.smtp_port, start_tls=True, tls_context=context)
        await smtp.connect()
        await smtp.ehlo()  # after STARTTLS: the server allows long AUTH lines only in an ESMTP session
        blob = base64.b64encode(f"user=alice@sandbox.test\x01auth=Bearer {token}\x01\x01".encode()).decode()
        reply = await smtp.execute_command(b"AUTH", b"XOAUTH2", blob.encode())
        assert reply.code == 235, reply
        clients.append(smtp)

    async def run(smtp: aiosmtplib.SMTP, part: list[EmailMessage]) -> None:
        for message in part:
            await smtp.send_message(message)

    start = time.perf_counter()
    await asyncio.gather(*(run(c, messages[i::CONNECTIONS]) for i, c in enumerate(clients)))
    elapsed = time.perf_counter() - start
    for smtp in clients:
        await smtp.quit()
    return count / elapsed


async def _setup(sandbox: RemoteSandbox, data_dir: Path, database_url: str) -> tuple[Any, Any, Clock]:
    """mailgate with an API key, configured for the sandbox provider and authorized through its consent."""
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up, before timing
    providers = data_dir / "providers.toml"
    providers.write_text(sandbox.providers)
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        admin_password=PASSWORD,
        providers_file=providers,
        secret_key="mailgate bench key",  # a reused PostgreSQL database stays readable
    )
    clock = Clock()
    services = await build_services(settings, clock=clock)
    await services.admins.ensure_admin(PASSWORD)
    key = await services.admins.create_api_key("bench")
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)),
        base_url="http://localhost:8080",
        headers={"Authorization": f"Bearer {key.key}"},
        timeout=60,
    )
    harness = Harness(services=services, sandbox=sandbox, api=api, clock=clock)  # type: ignore[arg-type]
    # The sandbox provider: no per-minute limit, 3 connections (as the ceiling).
    await harness.configure("sandbox")
    assert (await harness.authorize()).status_code == 200
    return services, api, clock


async def full_path(sandbox: RemoteSandbox, count: int, data_dir: Path, database_url: str) -> dict[str, Any]:
    services, api, clock = await _setup(sandbox, data_dir, database_url)
    try:
        before = (await sandbox.stats())["token_requests"].get("refresh_token", 0)

        worker = Worker(services.outbox, services.mailer)
        task = asyncio.create_task(worker.run())
        pending = iter(range(count))
        start = time.perf_counter()

        async def client() -> None:
            for i in pending:
                text = "Hello from the benchmark.\n" * 20
                body = {"to": [f"r{i}@example.com"], "subject": f"bench {i}", "text": text}
                r = await api.post("/ddenterpriseapi/v2/email/messages", json=body)
                assert r.status_code == 202, r.text
                if i == count // 2:
                    clock.advance(3600)  # the access token expires mid-run: one refresh is expected

        await asyncio.gather(*(client() for _ in range(16)))
        while (await services.outbox.counts())["sent"] < count:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - start
        refreshes = (await sandbox.stats())["token_requests"].get("refresh_token", 0) - before
        worker.stop()
        await task

        await api.aclose()
        return {"full_rate": count / elapsed, "token_calls_per_1000": refreshes * 1000 / count, "refreshes": refreshes}
    finally:
        await services.aclose()


async def memory(sandbox: RemoteSandbox, queued: int, data_dir: Path, database_url: str) -> dict[str, Any]:
    """In a fresh process: queue ``queued`` messages through the API with no worker, then deliver them all."""
    services, api, _ = await _setup(sandbox, data_dir, database_url)
    try:
        base = _peak_rss_mb()
        body = {"to": ["many@example.com"], "subject": "queued", "text": "Hello from the benchmark.\n" * 20}
        pending = iter(range(queued))

        async def client() -> None:
            for _ in pending:
                r = await api.post("/ddenterpriseapi/v2/email/messages", json=body)
                assert r.status_code == 202, r.text

        await asyncio.gather(*(client() for _ in range(16)))
        rss_queued = _peak_rss_mb()
        worker = Worker(services.outbox, services.mailer)
        task = asyncio.create_task(worker.run())
        start = time.perf_counter()
        while (await services.outbox.counts())["sent"] < queued:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.05)
        drain_rate = queued / (time.perf_counter() - start)
        worker.stop()
        await task
        await api.aclose()
    finally:
        await services.aclose()
    return {
        "rss_mb_started": base,
        "rss_mb_after_queueing": rss_queued,
        "peak_rss_mb": _peak_rss_mb(),
        "drain_rate": drain_rate,
    }


def _memory_child(conn: Any, facts: dict[str, Any], queued: int, data_dir: str, database_url: str) -> None:
    conn.send(asyncio.run(memory(RemoteSandbox(facts), queued, Path(data_dir), database_url)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        parent, child = multiprocessing.get_context("spawn").Pipe()
        proc = multiprocessing.get_context("spawn").Process(
            target=_sandbox_child, args=(child, str(Path(tmp) / "sandbox")), daemon=True
        )
        proc.start()
        try:
            sandbox = RemoteSandbox(parent.recv())
            raw = await ceiling(sandbox, args.messages)
            print(f"ceiling done: {raw:.0f}/s", file=sys.stderr)
            result = await full_path(sandbox, args.messages, Path(tmp) / "data", args.database_url)
            print(f"full path done: {result['full_rate']:.0f}/s", file=sys.stderr)
            # Memory in a fresh process, so that the phases above do not count in its peak.
            mine, theirs = multiprocessing.get_context("spawn").Pipe()
            facts = {
                "base_url": sandbox.base_url,
                "smtp_port": sandbox.smtp_port,
                "ca_file": str(sandbox.ca_file),
                "providers": sandbox.providers,
            }
            url = args.database_url
            if url.startswith("postgresql"):
                await _reset_postgres(url)
            child_proc = multiprocessing.get_context("spawn").Process(
                # PostgreSQL: the same database, so the same data dir (its key decrypts the stored settings).
                target=_memory_child,
                args=(theirs, facts, args.queued, str(Path(tmp) / ("data" if url else "data2")), url),
            )
            child_proc.start()
            result.update(mine.recv())
            child_proc.join()
        finally:
            proc.terminate()
            proc.join()
    db = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite"
    print(f"database:                      {db}")
    print(f"ceiling (raw aiosmtplib, {CONNECTIONS} conns): {raw:8.0f} messages/s")
    print(f"full path (API->outbox->SMTP): {result['full_rate']:8.0f} messages/s")
    print(f"ratio:                         {result['full_rate'] / raw:8.2f}")
    print(
        f"token endpoint calls:          {result['token_calls_per_1000']:8.2f} per 1,000 messages "
        f"({result['refreshes']} for {args.messages} messages, one token expiry mid-run)"
    )
    print(f"draining {args.queued} queued:        {result['drain_rate']:8.0f} messages/s")
    print(f"RSS (fresh process) at start:  {result['rss_mb_started']:8.1f} MB")
    print(f"RSS after queueing {args.queued}:     {result['rss_mb_after_queueing']:8.1f} MB")
    print(f"peak RSS, queueing + delivery: {result['peak_rss_mb']:8.1f} MB")
    print(json.dumps({"ceiling": raw, **result}))


if __name__ == "__main__":
    asyncio.run(main())

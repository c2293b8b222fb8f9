"""Outbox benchmark (not a test): the raw SMTP ceiling vs the full path API -> outbox -> SMTP.

Run: ``.venv/bin/python bench/outbox_bench.py [--messages 2000] [--queued 10000] [--rounds 3] [--database-url URL]``

In one run, against the same sandbox XOAUTH2 SMTP sink on loopback (in a child process, so that its inbox
does not count in this process's memory; the inbox in memory only, emptied before each phase):

1. ceiling: aiosmtplib sending pre-built messages, serialised to bytes beforehand (``sendmail``, not
   ``send_message``, which serialises each message again in the timed loop), over the pool's number of
   connections (3), each authenticated once with XOAUTH2 (on uvloop, like mailgate).  After a warm-up,
   measured first and after every full-path run;
2. full path, as deployed: ``mailgate serve`` started as a process, 16 clients POSTing pre-built JSON
   requests over keep-alive HTTP/1.1 connections, until the sink has received the last message;
   (a) API and worker in the one ``serve`` process, (b) ``serve --no-worker`` plus a ``mailgate worker``
   process; ``--rounds`` times each, taking turns.  Each run's ratio is against the mean of the ceilings
   measured just before and just after it (the machine's speed drifts); the medians are printed.  Warmed up
   like the ceiling: count // 4 messages through the whole path first (the worker's
   connections open), untimed; the time a cold process took to deliver its first message is printed.
   The CPU time each process (and the sink) spent per timed message is printed too;
3. token endpoint calls per 1,000 messages: in-process, with mailgate's clock moved past the access
   token's lifetime mid-run and the pooled connections dropped, so all 3 must authenticate again;
4. peak RSS of a fresh process that queues ``--queued`` messages through the API and delivers them all;
5. large messages: a fresh process queues ``--large`` messages with a ``--large-mb`` MB attachment, then
   delivers them while a client queues a small message every 50 ms: peak RSS, the largest the SQLite
   write-ahead log got, and the slowest of those small requests.

Prints messages/second of 1 and 2 and their ratio; shared machines are noisy, so compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import Clock, Harness  # noqa: E402

from mailgate.app import build_services  # noqa: E402
from mailgate.config import Settings  # noqa: E402
from mailgate.outbox import Worker  # noqa: E402
from mailgate.sandbox import Sandbox, SandboxConfig  # noqa: E402
from mailgate.web import create_app  # noqa: E402

CONNECTIONS = 3
CLIENTS = 16
#: The recipients of the full path's warm-up messages are numbered from here.
WARM_IDS = 10_000_000
PASSWORD = "bench admin password"
SECRET_KEY = "mailgate bench key"  # a reused PostgreSQL database stays readable
API = "/ddenterpriseapi/v2"
TEXT = "Hello from the benchmark.\n" * 20


def _sandbox_child(conn: Any) -> None:
    async def main() -> None:
        # No state directory: the inbox stays in memory.  Writing each message to an .eml file would measure
        # the file system (its first thousands of files in a new directory are several times slower).
        sandbox = Sandbox(SandboxConfig(http_port=0, smtp_port=0))
        await sandbox.start()
        conn.send(
            {
                "base_url": sandbox.base_url,
                "smtp_port": sandbox.smtp_port,
                "ca_file": str(sandbox.ca_file),
                "providers": sandbox.providers_toml("microsoft", "google"),
                "pid": os.getpid(),
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
        self.pid: int = facts["pid"]
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        # One client: a new one per call builds an SSL context, milliseconds of CPU while polling.
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base_url)
        return self._client

    async def control(self, path: str, **params: str) -> Any:
        r = await self.client.post(f"/_control/{path}", params=params)
        r.raise_for_status()
        return r.json() if r.content else None

    async def stats(self) -> dict[str, Any]:
        return dict((await self.client.get("/_control/stats")).json())


def _peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident set size (VmHWM; ru_maxrss would include the parent's before exec)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
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


def _message(i: int, sender: str) -> tuple[str, bytes]:
    """The recipient and the bytes of a message (serialised here, before any timing)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = f"r{i}@example.com"
    message["Subject"] = f"bench {i}"
    message["Message-ID"] = f"<bench-{i}@sandbox.test>"
    message.set_content("Hello from the benchmark.\n" * 20)
    return f"r{i}@example.com", message.as_bytes(policy=SMTP_POLICY)


async def ceiling(sandbox: RemoteSandbox, count: int) -> tuple[float, float]:
    """Messages/second of plain aiosmtplib over CONNECTIONS authenticated connections; the sink's CPU ms per
    message."""
    tokens = await sandbox.control("tokens", account="alice@sandbox.test", client_id="sandbox-client")
    token = tokens["access_token"]
    context = ssl.create_default_context(cafile=str(sandbox.ca_file))
    messages = [_message(i, "alice@sandbox.test") for i in range(count)]
    await sandbox.control("clear-inbox")  # every phase starts with an empty sink (a full one collects slower)
    clients = []
    for _ in range(CONNECTIONS):
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sandbox.smtp_port, start_tls=True, tls_context=context)
        await smtp.connect()
        await smtp.ehlo()  # after STARTTLS: the server allows long AUTH lines only in an ESMTP session
        blob = base64.b64encode(f"user=alice@sandbox.test\x01auth=Bearer {token}\x01\x01".encode()).decode()
        reply = await smtp.execute_command(b"AUTH", b"XOAUTH2", blob.encode())
        assert reply.code == 235, reply
        clients.append(smtp)

    async def run(smtp: aiosmtplib.SMTP, part: list[tuple[str, bytes]]) -> None:
        for recipient, data in part:
            await smtp.sendmail("alice@sandbox.test", [recipient], data)

    sink_cpu = _cpu_seconds(sandbox.pid)
    start = time.perf_counter()
    await asyncio.gather(*(run(c, messages[i::CONNECTIONS]) for i, c in enumerate(clients)))
    elapsed = time.perf_counter() - start
    sink_cpu = _cpu_seconds(sandbox.pid) - sink_cpu
    for smtp in clients:
        await smtp.quit()
    return count / elapsed, sink_cpu * 1000 / count


async def _setup(sandbox: RemoteSandbox, data_dir: Path, database_url: str) -> tuple[Any, Any, Clock, str]:
    """mailgate with an API key, configured for the sandbox provider and authorized through its consent."""
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up, before timing
    providers = data_dir / "providers.toml"
    providers.write_text(sandbox.providers)
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        admin_password=PASSWORD,
        providers_file=providers,
        secret_key=SECRET_KEY,
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
    return services, api, clock, key.key


@contextlib.asynccontextmanager
async def _delivering(services: Any) -> AsyncIterator[Worker]:
    """A worker delivering the outbox of ``services`` in this process, stopped (its connections closed) on exit."""
    worker = Worker(services.outbox, services.mailer)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await task


async def _until_sent(services: Any, count: int) -> None:
    while (await services.outbox.counts())["sent"] < count:  # noqa: ASYNC110 - polling the database
        await asyncio.sleep(0.05)


async def token_calls(sandbox: RemoteSandbox, count: int, data_dir: Path, database_url: str) -> dict[str, Any]:
    """In-process: token endpoint calls while ``count`` messages go out, the access token expiring mid-run."""
    services, api, clock, _ = await _setup(sandbox, data_dir, database_url)
    try:
        before = (await sandbox.stats())["token_requests"].get("refresh_token", 0)
        async with _delivering(services) as worker:
            pending = iter(range(count))

            async def client() -> None:
                for i in pending:
                    body = {"to": [f"r{i}@example.com"], "subject": f"bench {i}", "text": TEXT}
                    r = await api.post(f"{API}/email/messages", json=body)
                    assert r.status_code == 202, r.text
                    if i == count // 2:
                        # The access token expires and the provider closes the sessions: every pooled
                        # connection must authenticate again, and exactly one refresh should serve them all.
                        clock.advance(3600)
                        await worker.close()

            await asyncio.gather(*(client() for _ in range(CLIENTS)))
            await _until_sent(services, count)
            refreshes = (await sandbox.stats())["token_requests"].get("refresh_token", 0) - before
        await api.aclose()
        return {"token_calls_per_1000": refreshes * 1000 / count, "refreshes": refreshes}
    finally:
        await services.aclose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_serving(port: int, log_name: str) -> None:
    """Until ``mailgate serve`` on ``port`` answers /healthz (30 s at most; its output is in ``log_name``)."""
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"mailgate serve did not start; see {log_name}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _requests(count: int, port: int, key: str, first: int) -> list[bytes]:
    """Pre-built HTTP/1.1 requests (like the ceiling's pre-built messages: the client costs next to nothing)."""
    out = []
    for i in range(first, first + count):
        body = json.dumps({"to": [f"r{i}@example.com"], "subject": f"bench {i}", "text": TEXT}).encode()
        head = (
            f"POST {API}/email/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _post_all(port: int, requests: list[bytes]) -> None:
    """CLIENTS keep-alive connections sending the requests one after another; every answer must be 202."""
    pending = iter(requests)

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in pending:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                length = next(int(x.split(b":", 1)[1]) for x in lines if x.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                assert lines[0][9:12] == b"202", (lines[0], body)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def deployed(
    sandbox: RemoteSandbox, count: int, data_dir: Path, database_url: str, key: str, *, split: bool, first: int
) -> dict[str, Any]:
    """``mailgate serve`` (and with ``split`` a ``mailgate worker``) as processes, fed over HTTP."""
    port = _free_port()
    env = {
        **os.environ,
        "MAILGATE_DATA_DIR": str(data_dir),
        "MAILGATE_SECRET_KEY": SECRET_KEY,
        "MAILGATE_ADMIN_PASSWORD": PASSWORD,
        "MAILGATE_PROVIDERS_FILE": str(data_dir / "providers.toml"),
    }
    if database_url:
        env["MAILGATE_DATABASE_URL"] = database_url
    mailgate = str(Path(sys.executable).with_name("mailgate"))
    log = (data_dir / f"serve-{port}.log").open("wb")
    commands = [[mailgate, "serve", "--port", str(port), *(["--no-worker"] if split else [])]]
    if split:
        commands.append([mailgate, "worker"])
    procs = [subprocess.Popen(c, env=env, stdout=log, stderr=subprocess.STDOUT) for c in commands]  # noqa: ASYNC220
    try:
        await wait_until_serving(port, log.name)
        requests = _requests(count, port, key, first)
        await sandbox.control("clear-inbox")
        # Warm-up, as for the ceiling (a run of count // 4 messages first, and its connections set up before
        # its timing): the worker's pooled connections open and authenticated, every step run once.  How long
        # a cold process took to deliver its first message is reported.
        warm = count // 4
        received = (await sandbox.stats())["smtp_messages"]
        start = time.perf_counter()
        posting = asyncio.create_task(_post_all(port, _requests(warm, port, key, WARM_IDS + first)))
        while (await sandbox.stats())["smtp_messages"] == received:  # noqa: ASYNC110 - polling the sink
            await asyncio.sleep(0.005)
        cold = time.perf_counter() - start
        await posting
        while (await sandbox.stats())["smtp_messages"] < received + warm:  # noqa: ASYNC110 - polling the sink
            await asyncio.sleep(0.02)
        stats = await sandbox.stats()
        received, refreshed = stats["smtp_messages"], stats["token_requests"].get("refresh_token", 0)
        cpu = [_cpu_seconds(p.pid) for p in procs]
        sink_cpu = _cpu_seconds(sandbox.pid)
        start = time.perf_counter()
        await _post_all(port, requests)
        while (stats := await sandbox.stats())["smtp_messages"] < received + count:  # noqa: ASYNC110 - polling the sink
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - start
        return {
            "rate": count / elapsed,
            "cpu_ms_per_message": [(_cpu_seconds(p.pid) - c) * 1000 / count for p, c in zip(procs, cpu, strict=True)],
            "sink_cpu_ms_per_message": (_cpu_seconds(sandbox.pid) - sink_cpu) * 1000 / count,
            "refreshes": stats["token_requests"].get("refresh_token", 0) - refreshed,
            "peak_rss_mb": [_peak_rss_mb(p.pid) for p in procs],
            "first_delivery_cold_seconds": cold,
        }
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        log.close()


async def _prepare(sandbox: RemoteSandbox, data_dir: Path, database_url: str) -> str:
    """Configure and authorize mailgate in ``data_dir`` (as an administrator would); its API key."""
    services, api, _, key = await _setup(sandbox, data_dir, database_url)
    await api.aclose()
    await services.aclose()
    return str(key)


async def memory(sandbox: RemoteSandbox, queued: int, data_dir: Path, database_url: str) -> dict[str, Any]:
    """In a fresh process: queue ``queued`` messages through the API with no worker, then deliver them all."""
    services, api, _, _ = await _setup(sandbox, data_dir, database_url)
    try:
        base = _peak_rss_mb()
        body = {"to": ["many@example.com"], "subject": "queued", "text": TEXT}
        pending = iter(range(queued))

        async def client() -> None:
            for _ in pending:
                r = await api.post("/ddenterpriseapi/v2/email/messages", json=body)
                assert r.status_code == 202, r.text

        await asyncio.gather(*(client() for _ in range(16)))
        rss_queued = _peak_rss_mb()
        async with _delivering(services):
            start = time.perf_counter()
            await _until_sent(services, queued)
            drain_rate = queued / (time.perf_counter() - start)
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
    conn.send(uvloop.run(memory(RemoteSandbox(facts), queued, Path(data_dir), database_url)))


async def large_messages(sandbox: RemoteSandbox, count: int, mb: float, data_dir: Path, url: str) -> dict[str, Any]:
    """In a fresh process: queue ``count`` messages with an ``mb`` MB attachment, then deliver them while a
    client queues a small message every 50 ms."""
    services, api, _, _ = await _setup(sandbox, data_dir, url)
    wal = data_dir / "mailgate.db-wal"
    try:
        attachment = base64.b64encode(os.urandom(int(mb * 1024 * 1024))).decode()
        pdf = {"filename": "report.pdf", "content_type": "application/pdf", "content_base64": attachment}
        body = {"to": ["big@example.com"], "subject": "large", "text": "Attached.", "attachments": [pdf]}
        for _ in range(count):
            r = await api.post(f"{API}/email/messages", json=body)
            assert r.status_code == 202, r.text
        rss_queued = _peak_rss_mb()
        slowest = largest_wal = 0.0
        small = {"to": ["small@example.com"], "subject": "small", "text": TEXT}
        async with _delivering(services):
            start = time.perf_counter()
            while (await services.outbox.counts())["sent"] < count:
                posted = time.perf_counter()
                r = await api.post(f"{API}/email/messages", json=small)
                assert r.status_code == 202, r.text
                slowest = max(slowest, time.perf_counter() - posted)
                largest_wal = max(largest_wal, wal.stat().st_size if wal.exists() else 0)
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
        await api.aclose()
    finally:
        await services.aclose()
    return {
        "large_rss_mb_after_queueing": rss_queued,
        "large_peak_rss_mb": _peak_rss_mb(),
        "large_seconds": elapsed,
        "large_wal_mb": largest_wal / 1e6,
        "large_slowest_post_ms": slowest * 1000,
    }


def _large_child(conn: Any, facts: dict[str, Any], count: int, mb: float, data_dir: str, url: str) -> None:
    conn.send(uvloop.run(large_messages(RemoteSandbox(facts), count, mb, Path(data_dir), url)))


def _in_child(target: Callable[..., None], *args: Any) -> dict[str, Any]:
    """What ``target(connection, *args)`` sends back, run in a fresh process (its memory its own)."""
    mine, theirs = multiprocessing.get_context("spawn").Pipe()
    child = multiprocessing.get_context("spawn").Process(target=target, args=(theirs, *args))
    child.start()
    result: dict[str, Any] = mine.recv()
    child.join()
    return result


#: The full path's deployments: name, label, whether the worker runs in a process of its own.
DEPLOYMENTS = (("serve", "serve (API + worker)", False), ("split", "serve --no-worker + worker", True))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="full-path runs of each deployment (default 3)")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary directory")
    parser.add_argument("--large", type=int, default=40, help="large messages queued then delivered (0: none)")
    parser.add_argument("--large-mb", type=float, default=5.0, help="their attachment's size in MB (default 5)")
    args = parser.parse_args()
    url, count = args.database_url, args.messages
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in DEPLOYMENTS}
    with tempfile.TemporaryDirectory() as tmp:
        parent, child = multiprocessing.get_context("spawn").Pipe()
        proc = multiprocessing.get_context("spawn").Process(target=_sandbox_child, args=(child,), daemon=True)
        proc.start()
        try:
            sandbox = RemoteSandbox(parent.recv())
            await ceiling(sandbox, count // 4)  # warm-up: the sink's and this process's first messages are slower
            ceilings = [await ceiling(sandbox, count)]
            data = Path(tmp) / "data"
            key = await _prepare(sandbox, data, url)
            # The machine's speed drifts: the deployments take turns, and each run is compared with the
            # ceiling measured just before and just after it.
            for _ in range(args.rounds):
                for name, _, split in DEPLOYMENTS:
                    first = count * sum(len(r) for r in runs.values())  # every run has recipients of its own
                    result = await deployed(sandbox, count, data, url, key, split=split, first=first)
                    ceilings.append(await ceiling(sandbox, count))
                    result["ratio"] = result["rate"] / statistics.mean(rate for rate, _ in ceilings[-2:])
                    runs[name].append(result)
            raw = statistics.median(rate for rate, _ in ceilings)
            tokens = await token_calls(sandbox, count, Path(tmp) / "tokens", url)
            # Memory in a fresh process, so that the phases above do not count in its peak.
            facts = {
                "base_url": sandbox.base_url,
                "smtp_port": sandbox.smtp_port,
                "ca_file": str(sandbox.ca_file),
                "providers": sandbox.providers,
                "pid": sandbox.pid,
            }
            # PostgreSQL: the same database, so the same secret key (it decrypts the stored settings).
            if url.startswith("postgresql"):
                await _reset_postgres(url)
            memory_result = _in_child(_memory_child, facts, args.queued, str(Path(tmp) / "memory"), url)
            large: dict[str, Any] = {}
            if args.large:
                if url.startswith("postgresql"):
                    await _reset_postgres(url)
                large = _in_child(_large_child, facts, args.large, args.large_mb, str(Path(tmp) / "large"), url)
        finally:
            proc.terminate()
            proc.join()
    db = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"database:                            {db}")
    spread = ", ".join(f"{rate:.0f}" for rate, _ in ceilings)
    sink = statistics.median(ms for _, ms in ceilings)
    print(
        f"ceiling (raw aiosmtplib, {CONNECTIONS} conns):    {raw:8.0f} messages/s  (median of {spread})"
        f"  sink CPU ms/message {sink:.2f}"
    )
    for name, label, _ in DEPLOYMENTS:
        print(_summary(label, runs[name]))
    print(
        f"token endpoint calls:                {tokens['token_calls_per_1000']:8.2f} per 1,000 messages "
        f"({tokens['refreshes']} for {count} messages; the token expired and the 3 connections re-authenticated)"
    )
    print(f"draining {args.queued} queued:              {memory_result['drain_rate']:8.0f} messages/s")
    print(f"RSS (fresh process) at start:        {memory_result['rss_mb_started']:8.1f} MB")
    print(f"RSS after queueing {args.queued}:           {memory_result['rss_mb_after_queueing']:8.1f} MB")
    print(f"peak RSS, queueing + delivery:       {memory_result['peak_rss_mb']:8.1f} MB")
    if large:
        wal = f", write-ahead log at most {large['large_wal_mb']:.0f} MB" if not url.startswith("postgresql") else ""
        print(
            f"{args.large} messages of {args.large_mb:g} MB:            delivered in {large['large_seconds']:.1f} s;"
            f" peak RSS {large['large_peak_rss_mb']:.0f} MB (after queueing {large['large_rss_mb_after_queueing']:.0f})"
            f"{wal}; slowest small POST meanwhile {large['large_slowest_post_ms']:.0f} ms"
        )
    print(json.dumps({"ceiling": raw, "ceilings": ceilings, **runs, **tokens, **memory_result, **large}))


def _summary(label: str, results: list[dict[str, Any]]) -> str:
    """One deployment's runs: medians, and each run's ratio to the ceilings measured around it."""
    rate = statistics.median(r["rate"] for r in results)
    ratio = statistics.median(r["ratio"] for r in results)
    each = " / ".join(f"{r['ratio']:.2f}" for r in results)
    processes = range(len(results[0]["cpu_ms_per_message"]))
    cpu = " + ".join(f"{statistics.median(r['cpu_ms_per_message'][i] for r in results):.2f}" for i in processes)
    rss = " + ".join(f"{max(r['peak_rss_mb'][i] for r in results):.0f}" for i in processes)
    sink = statistics.median(r["sink_cpu_ms_per_message"] for r in results)
    colds = [r["first_delivery_cold_seconds"] for r in results]
    return (
        f"full path, {label + ':':27}{rate:8.0f} messages/s  ratio {ratio:5.2f} (median; runs {each})"
        f"  CPU ms/message {cpu} (sink {sink:.2f})  peak RSS MB {rss}"
        f"  token calls {sum(r['refreshes'] for r in results)}  cold start: first delivery after"
        f" {min(colds):.2f}-{max(colds):.2f} s"
    )


if __name__ == "__main__":
    uvloop.run(main())

"""Relay benchmark (not a test): applications sending one message per connection, through mailgate's SMTP
relay, directly to the provider with a token, and through emailproxy (email-oauth2-proxy).

Run: ``.venv/bin/python bench/relay_bench.py [--messages 400] [--rounds 3] [--emailproxy-messages 48]``
(emailproxy: ``.venv/bin/pip install emailproxy`` first; without it that part is skipped, and said so).

In one run, against the same sandbox XOAUTH2 SMTP server on loopback (in a child process), CLIENTS (16)
parallel clients (aiosmtplib, on uvloop, in this process) each send messages one per connection, as cron
jobs and monitoring do: connect, STARTTLS, EHLO, AUTH, MAIL/RCPT/DATA, QUIT:

1. direct: to the sandbox server, AUTH XOAUTH2 with a valid access token (what an application that could do
   OAuth itself would do); done when the last client's QUIT is answered;
2. relay: ``mailgate serve --relay-port`` as a process, AUTH PLAIN with a relay user; done when the sandbox
   has received the last message (the outbox delivers over its pooled, already authenticated connections);
3. emailproxy: its SMTP proxy in front of the same server (its client-credentials flow against the
   sandbox's token endpoint), AUTH PLAIN; done when the last client's QUIT is answered.

Each is warmed up first (a quarter of the count, untimed), then the three take turns ``--rounds`` times.
Prints each round's messages/second, the medians, the CPU per message of each process, the median of the
rounds' relay/direct and relay/emailproxy ratios, and the CPU of one relay login (measured in process).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib.util
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from outbox_bench import (  # noqa: E402 - the sandbox child and mailgate's set-up are shared with it
    PASSWORD,
    SECRET_KEY,
    RemoteSandbox,
    _cpu_seconds,
    _free_port,
    _sandbox_child,
    _setup,
)

API = "/ddenterpriseapi/v2"
CLIENTS = 16
ACCOUNT = "alice@sandbox.test"
RELAY_USER = "bench-app"
TEXT = "Hello from the relay benchmark.\r\n" * 20
Sender = Callable[[int], Awaitable[None]]


def _message(i: int) -> bytes:
    return (
        f"From: {ACCOUNT}\r\nTo: r{i}@example.com\r\nSubject: relay bench {i}\r\n"
        f"Message-ID: <relay-bench-{i}-{time.time_ns()}@sandbox.test>\r\n\r\n{TEXT}"
    ).encode()


async def _one(port: int, *, tls: ssl.SSLContext | None, login: tuple[str, str] | None, token: str, i: int) -> None:
    """One connection, one message."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=tls is not None, tls_context=tls, timeout=120)
    await smtp.connect()
    try:
        await smtp.ehlo()
        if token:
            blob = base64.b64encode(f"user={ACCOUNT}\x01auth=Bearer {token}\x01\x01".encode()).decode()
            reply = await smtp.execute_command(b"AUTH", b"XOAUTH2", blob.encode())
            assert reply.code == 235, reply
        elif login is not None:
            await smtp.login(*login)
        await smtp.sendmail(ACCOUNT, [f"r{i}@example.com"], _message(i))
    finally:
        with contextlib.suppress(aiosmtplib.SMTPException):
            await smtp.quit()


async def _clients(send: Sender, first: int, count: int, clients: int) -> None:
    pending = iter(range(first, first + count))

    async def client() -> None:
        for i in pending:
            await send(i)

    await asyncio.gather(*(client() for _ in range(clients)))


async def _received(sandbox: RemoteSandbox) -> int:
    return int((await sandbox.stats())["smtp_messages"])


async def _timed(
    sandbox: RemoteSandbox, send: Sender, first: int, count: int, clients: int, pids: dict[str, int]
) -> tuple[float, dict[str, float]]:
    """Messages/second from the first connection until the sandbox has received all ``count``, and the CPU
    milliseconds per message of each process of ``pids`` (by name)."""
    before = await _received(sandbox)
    cpu = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    start = time.perf_counter()
    await _clients(send, first, count, clients)
    while await _received(sandbox) < before + count:  # noqa: ASYNC110 - polling the sink in another process
        await asyncio.sleep(0.02)
    rate = count / (time.perf_counter() - start)
    return rate, {name: (_cpu_seconds(pid) - cpu[name]) * 1000 / count for name, pid in pids.items()}


async def _listening(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited; see {log}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError(f"{what} did not listen on {port}; see {log}")


async def _login_cpu(users: Any, password: str, count: int = 20_000) -> float:
    """CPU microseconds per relay login (the keyed hash, the comparison, the cached user; the database is read
    at most once a second of the run)."""
    assert await users.authenticate(RELAY_USER, password) is not None
    start = time.process_time()
    for _ in range(count):
        await users.authenticate(RELAY_USER, password)
    return (time.process_time() - start) * 1e6 / count


def _spawn(command: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    """Start a process (before any timing), its output to ``log`` or nowhere."""
    if log is None:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _emailproxy_config(sandbox: RemoteSandbox, path: Path, port: int) -> None:
    # https://github.com/simonrob/email-oauth2-proxy: emailproxy.config's format.  The client-credentials
    # flow (no permission_url: with one, the proxy waits for an interactive authorisation) needs no browser:
    # the proxy asks the token endpoint itself, then sends XOAUTH2 upstream.  It caches the token encrypted
    # under a key derived from the client's password (PBKDF2), so each login derives that key again.
    path.write_text(
        f"""[SMTP-{port}]
server_address = 127.0.0.1
server_port = {sandbox.smtp_port}
server_starttls = True
local_address = 127.0.0.1

[{ACCOUNT}]
token_url = {sandbox.base_url}/sandbox/oauth2/v2.0/token
oauth2_scope = https://outlook.office.com/.default
oauth2_flow = client_credentials
redirect_uri = http://localhost
client_id = sandbox-client
client_secret = sandbox-secret
"""
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400, help="per timed run, relay and direct")
    parser.add_argument("--emailproxy-messages", type=int, default=48, help="per timed run through emailproxy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--emailproxy-clients",
        type=int,
        default=4,
        help="parallel clients of emailproxy (it listens with a backlog of 5: of 16 clients connecting at once, "
        "some are never greeted)",
    )
    parser.add_argument("--work-dir", type=Path, help="keep the data, configurations and logs here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    import multiprocessing

    parent, child = multiprocessing.Pipe()
    sandbox_process = multiprocessing.get_context("spawn").Process(target=_sandbox_child, args=(child,), daemon=True)
    sandbox_process.start()
    sandbox = RemoteSandbox(parent.recv())
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        tmp = args.work_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="relay-bench-"))
        data_dir = Path(tmp) / "data"
        try:
            services, api, _clock, _key = await _setup(sandbox, data_dir, "")
            r = await api.put(f"{API}/email/server", json={"sender": ACCOUNT})
            assert r.status_code == 200, r.text
            password = (await services.relay_users.add(RELAY_USER)).password
            login_us = await _login_cpu(services.relay_users, password)
            await api.aclose()
            await services.aclose()

            relay_port, http_port = _free_port(), _free_port()
            env = {
                **os.environ,
                "MAILGATE_DATA_DIR": str(data_dir),
                "MAILGATE_SECRET_KEY": SECRET_KEY,
                "MAILGATE_ADMIN_PASSWORD": PASSWORD,
                "MAILGATE_PROVIDERS_FILE": str(data_dir / "providers.toml"),
            }
            log = data_dir / "serve.log"
            mailgate = str(Path(sys.executable).with_name("mailgate"))
            command = [mailgate, "serve", "--port", str(http_port), "--relay-port", str(relay_port)]
            procs.append(_spawn(command, env, log))
            await _listening(relay_port, procs[-1], "mailgate serve", log)
            relay_tls = ssl.create_default_context(cafile=str(data_dir / "relay-cert.pem"))
            sandbox_tls = ssl.create_default_context(cafile=str(sandbox.ca_file))
            token = (await sandbox.control("tokens", account=ACCOUNT, client_id="sandbox-client"))["access_token"]

            async def direct(i: int) -> None:
                await _one(sandbox.smtp_port, tls=sandbox_tls, login=None, token=token, i=i)

            async def relay(i: int) -> None:
                await _one(relay_port, tls=relay_tls, login=(RELAY_USER, password), token="", i=i)

            runs: dict[str, tuple[Sender, int, int]] = {
                "direct": (direct, args.messages, CLIENTS),
                "relay": (relay, args.messages, CLIENTS),
            }
            why_no_emailproxy = ""
            if importlib.util.find_spec("emailproxy") is None:
                why_no_emailproxy = "emailproxy is not installed (.venv/bin/pip install emailproxy)"
            else:
                proxy_port = _free_port()
                config = Path(tmp) / "emailproxy.config"
                _emailproxy_config(sandbox, config, proxy_port)
                proxy_log = Path(tmp) / "emailproxy.log"
                # Its upstream STARTTLS verifies the sandbox's certificate with the default context.
                proxy_env = {**os.environ, "SSL_CERT_FILE": str(sandbox.ca_file)}
                command = [
                    sys.executable, "-m", "emailproxy", "--no-gui", "--config-file", str(config),
                    "--log-file", str(proxy_log),
                ]  # fmt: skip
                procs.append(_spawn(command, proxy_env, None))
                await _listening(proxy_port, procs[-1], "emailproxy", proxy_log)

                async def emailproxy(i: int) -> None:
                    # The password encrypts emailproxy's cached token; any password works with this flow.
                    await _one(proxy_port, tls=None, login=(ACCOUNT, "any-password"), token="", i=i)

                runs["emailproxy"] = (emailproxy, args.emailproxy_messages, args.emailproxy_clients)

            first = 0
            pids = {"bench client": os.getpid(), "sandbox": sandbox.pid, "mailgate serve": procs[0].pid}
            if len(procs) > 1:
                pids["emailproxy"] = procs[1].pid
            for send, count, clients in runs.values():  # warm-up: connections, caches, the first token
                await _timed(sandbox, send, first, max(clients, count // 4), clients, pids)
                first += count
            rates: dict[str, list[float]] = {name: [] for name in runs}
            cpu: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
            for round_ in range(args.rounds):
                for name, (send, count, clients) in runs.items():
                    rate, used = await _timed(sandbox, send, first, count, clients, pids)
                    rates[name].append(rate)
                    cpu[name].append(used)
                    first += count
                print(f"round {round_ + 1}: " + ", ".join(f"{n} {r[-1]:.1f}/s" for n, r in rates.items()), flush=True)
            medians = {name: statistics.median(r) for name, r in rates.items()}
            print(f"\nOne message per connection (STARTTLS + AUTH each), {args.rounds} rounds:")
            # The machine's load (1-minute average) before and after: with other jobs running, the rates say more
            # about them than about mailgate, and the CPU per message is the figure to compare.
            print(f"  load average: {load_before[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
            for name, value in medians.items():
                _, count, clients = runs[name]
                print(f"  {name:10} median {value:8.1f} messages/s  ({count} messages per run, {clients} clients)")
                busy = {p: statistics.median(run[p] for run in cpu[name]) for p in pids}
                print(
                    "             CPU ms/message: " + ", ".join(f"{p} {ms:.2f}" for p, ms in busy.items() if ms >= 0.01)
                )
            print(f"  relay login (password check, in process): {login_us:.1f} µs of CPU (target: well under 1 ms)")
            # Each round's ratio (its runs follow one another: the machine's speed drifts between rounds).
            direct_ratio = statistics.median(r / d for r, d in zip(rates["relay"], rates["direct"], strict=True))
            print(f"  relay / direct:     {direct_ratio:.2f}  (median of the rounds' ratios; target >= 0.8)")
            if "emailproxy" in medians:
                proxy = statistics.median(r / e for r, e in zip(rates["relay"], rates["emailproxy"], strict=True))
                print(f"  relay / emailproxy: {proxy:.1f}  (median of the rounds' ratios; target >= 20)")
            else:
                print(f"  emailproxy: not measured: {why_no_emailproxy}")
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
            sandbox_process.terminate()


def _run() -> Any:
    return uvloop.run(main())


if __name__ == "__main__":
    _run()

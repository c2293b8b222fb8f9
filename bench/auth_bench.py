"""Authentication benchmark (not a test): HTTP Basic against API keys, and /healthz under a password flood.

Run: ``.venv/bin/python bench/auth_bench.py [--clients 8] [--seconds 3] [--rounds 3] [--flooders 8]``

In one run, against one ``mailgate serve --no-worker`` started as a process on loopback (issue 20, point 1):

1. request rate of ``GET /v2/oauth/config`` from ``--clients`` keep-alive connections for ``--seconds``, with
   an API key, then with the right HTTP Basic password; ``--rounds`` times each, taking turns (the machine's
   speed drifts).  Target: Basic at least 0.5 of the API key's rate;
2. ``/healthz`` latency from one connection, asking one request after another for ``--seconds``: alone
   (the baseline), then while ``--flooders`` connections send wrong Basic passwords as fast as they are
   answered, (a) all from one address (the login limiter answers 429 after its limit), and (b) each
   attempt from a new address, reported through the proxy the server trusts (``MAILGATE_TRUSTED_PROXIES=
   127.0.0.1``): every attempt then costs an argon2 verification.  Target: p95 under 100 ms.

Prints the medians, p50/p95 latencies, and the ratios against the baselines of the same run.  Bounded: each
phase lasts ``--seconds``; the whole run about (2 x rounds + 3) x seconds plus the server's start.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

API = "/ddenterpriseapi/v2"
PASSWORD = "bench admin password"
SECRET_KEY = "auth-bench-secret-key-material-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()


def _request(port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{lines}\r\n".encode()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request on a keep-alive connection, read its whole answer; its status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next((int(x.split(b":", 1)[1]) for x in lines if x.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return int(lines[0][9:12])


async def _loop(port: int, seconds: float, make: Callable[[int], bytes], expect: set[int]) -> list[float]:
    """One connection sending ``make(i)`` requests one after another for ``seconds``: each one's latency."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies: list[float] = []
    try:
        deadline = time.perf_counter() + seconds
        for i in itertools.count():
            start = time.perf_counter()
            if start >= deadline:
                break
            status = await _exchange(reader, writer, make(i))
            assert status in expect, status
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()
    return latencies


async def rate(port: int, clients: int, seconds: float, authorization: str) -> float:
    """Requests per second of ``clients`` connections asking for the OAuth configuration."""
    request = _request(port, f"{API}/oauth/config", {"Authorization": authorization})
    start = time.perf_counter()
    done = await asyncio.gather(*(_loop(port, seconds, lambda _i: request, {200}) for _ in range(clients)))
    return sum(len(d) for d in done) / (time.perf_counter() - start)


async def healthz_latency(port: int, seconds: float, flooders: int, spread: bool) -> dict[str, float]:
    """/healthz latencies (ms) while ``flooders`` connections send wrong passwords (none: the baseline)."""
    wrong = _basic("wrong password")
    counter = itertools.count()

    def attempt(_i: int) -> bytes:
        headers = {"Authorization": wrong}
        if spread:  # a new address per attempt: no limiter helps, each costs an argon2 verification
            n = next(counter)
            headers["X-Forwarded-For"] = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        return _request(port, f"{API}/oauth/config", headers)

    health = _request(port, "/healthz", {})
    flood = [
        asyncio.create_task(_loop(port, seconds + 0.5, attempt, {401, 429}))  # outlasts the measurement
        for _ in range(flooders)
    ]
    await asyncio.sleep(0.3 if flooders else 0)  # the flood under way first
    measured = await _loop(port, seconds, lambda _i: health, {200})
    attempts = sum(len(x) for x in await asyncio.gather(*flood))
    ms = sorted(x * 1000 for x in measured)
    return {
        "p50": statistics.median(ms),
        "p95": ms[int(len(ms) * 0.95) - 1] if len(ms) >= 20 else ms[-1],
        "answered": len(ms),
        "attempts_per_s": attempts / (seconds + 0.5),
    }


def _api_key(env: dict[str, str]) -> str:
    mailgate = str(Path(sys.executable).with_name("mailgate"))
    out = subprocess.run([mailgate, "apikey", "create", "bench"], env=env, check=True, capture_output=True, text=True)
    return out.stdout.split("): ", 1)[1].split()[0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flooders", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailgate-auth-bench-") as tmp:
        port = _free_port()
        env = {
            **os.environ,
            "MAILGATE_DATA_DIR": str(Path(tmp) / "data"),
            "MAILGATE_SECRET_KEY": SECRET_KEY,
            "MAILGATE_ADMIN_PASSWORD": PASSWORD,
            "MAILGATE_TRUSTED_PROXIES": "127.0.0.1",
        }
        env.pop("MAILGATE_DATABASE_URL", None)
        key = _api_key(env)
        mailgate = str(Path(sys.executable).with_name("mailgate"))
        log = (Path(tmp) / "serve.log").open("wb")
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
            [mailgate, "serve", "--no-worker", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            async with httpx.AsyncClient() as http:
                for _ in range(300):
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError("mailgate serve did not start")
            await rate(port, args.clients, 0.5, _basic(PASSWORD))  # warm-up, untimed
            keyed, basic = [], []
            for _ in range(args.rounds):
                keyed.append(await rate(port, args.clients, args.seconds, f"Bearer {key}"))
                basic.append(await rate(port, args.clients, args.seconds, _basic(PASSWORD)))
            print(f"requests/s, {args.clients} clients, median of {args.rounds} (each round's):")
            print(f"  API key     {statistics.median(keyed):8.0f}   {[round(x) for x in keyed]}")
            print(f"  HTTP Basic  {statistics.median(basic):8.0f}   {[round(x) for x in basic]}")
            ratio = statistics.median(basic) / statistics.median(keyed)
            print(f"  Basic / API key: {ratio:.2f}  (target >= 0.5)")
            print(f"/healthz latency (ms), one connection, {args.seconds:g} s each:")
            alone = await healthz_latency(port, args.seconds, 0, False)
            phases = [("alone (baseline)", alone)]
            phases.append(
                (
                    f"{args.flooders} flooders, one address",
                    await healthz_latency(port, args.seconds, args.flooders, False),
                )
            )
            phases.append(
                (
                    f"{args.flooders} flooders, new address each",
                    await healthz_latency(port, args.seconds, args.flooders, True),
                )
            )
            for label, r in phases:
                print(
                    f"  {label:32s} p50 {r['p50']:6.1f}  p95 {r['p95']:6.1f}  ({r['answered']} answered; "
                    f"wrong passwords {r['attempts_per_s']:.0f}/s)  p95 / baseline p95: {r['p95'] / alone['p95']:.1f}"
                )
            print("  target: p95 < 100 ms during a flood")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()


if __name__ == "__main__":
    asyncio.run(main())

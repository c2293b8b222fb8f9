"""Authentication benchmark (not a test): HTTP Basic against API keys, and /healthz under a password flood.

Run: ``.venv/bin/python bench/auth_bench.py [--clients 8] [--seconds 3] [--rounds 3] [--flooders 8]``

In one run, against one ``mailgate serve --no-worker`` started as a process on loopback (issue 20, point 1):

1. request rate of ``GET /v2/oauth/config`` from ``--clients`` keep-alive connections for ``--seconds``, with
   an API key, then with the right HTTP Basic password; ``--rounds`` times each, taking turns (the machine's
   speed drifts).  Target: Basic at least 0.5 of the API key's rate;
2. ``/healthz`` latency from one connection, asking one request after another for ``--seconds``: alone
   (the baseline), then while ``--flooders`` connections (from a child process) send wrong Basic passwords
   as fast as they are answered, (a) all from one address (the login limiter answers 429 after its limit), and (b) each
   attempt from a new address, reported through the proxy the server trusts (``MAILGATE_TRUSTED_PROXIES=
   127.0.0.1``): every attempt then costs an argon2 verification; and, as a control, (c) requests without
   credentials (401 without any password check: what a flood of any request costs).  Target: p95 under
   100 ms during a wrong-password flood.

Prints the medians, p50/p95 latencies, and the ratios against the baselines of the same run.  Bounded: each
phase lasts ``--seconds``; the whole run about (2 x rounds + 4) x seconds plus the server's start.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from outbox_bench import _free_port, wait_until_serving

API = "/ddenterpriseapi/v2"
PASSWORD = "bench admin password"
SECRET_KEY = "auth-bench-secret-key-material-0123456789"


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


#: What the flooders send: wrong passwords from one address or a new one each; or no credentials at all, a
#: control (a 401 without any password check: what any request flood costs the server).
FLOODS = {
    "one": "wrong password, one address",
    "spread": "wrong password, new address each",
    "none": "no credentials (control)",
}


async def _flood(port: int, seconds: float, flooders: int, mode: str) -> int:
    """``flooders`` connections sending wrong passwords for ``seconds``: how many were answered."""
    wrong = _basic("wrong password")
    counter = itertools.count()

    def attempt(_i: int) -> bytes:
        headers = {"Authorization": wrong} if mode != "none" else {}
        if mode == "spread":  # a new address per attempt: no limiter helps, each costs an argon2 verification
            n = next(counter)
            headers["X-Forwarded-For"] = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        return _request(port, f"{API}/oauth/config", headers)

    done = await asyncio.gather(*(_loop(port, seconds, attempt, {401, 429}) for _ in range(flooders)))
    return sum(len(d) for d in done)


def _flood_child(conn: Connection, port: int, seconds: float, flooders: int, mode: str) -> None:
    conn.send(asyncio.run(_flood(port, seconds, flooders, mode)))


async def healthz_latency(port: int, seconds: float, flooders: int, mode: str) -> dict[str, float]:
    """/healthz latencies (ms) while ``flooders`` connections send wrong passwords (none: the baseline).  The
    flood comes from a process of its own: in this one it would delay the measuring client, not the server."""
    health = _request(port, "/healthz", {})
    child = None
    if flooders:
        receiving, sending = multiprocessing.Pipe(duplex=False)
        child = multiprocessing.Process(target=_flood_child, args=(sending, port, seconds + 1.0, flooders, mode))
        child.start()
        await asyncio.sleep(0.5)  # the flood under way first; it outlasts the measurement
    measured = await _loop(port, seconds, lambda _i: health, {200})
    attempts = 0
    if child is not None:
        attempts = await asyncio.to_thread(receiving.recv)
        child.join()
    ms = sorted(x * 1000 for x in measured)
    return {
        "p50": statistics.median(ms),
        "p95": ms[int(len(ms) * 0.95) - 1] if len(ms) >= 20 else ms[-1],
        "answered": len(ms),
        "attempts_per_s": attempts / (seconds + 1.0),
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
            await wait_until_serving(port, log.name)
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
            alone = await healthz_latency(port, args.seconds, 0, "none")
            phases = [("alone (baseline)", alone)]
            for mode, label in FLOODS.items():
                measured = await healthz_latency(port, args.seconds, args.flooders, mode)
                phases.append((f"{args.flooders} flooders, {label}", measured))
            for label, r in phases:
                print(
                    f"  {label:45s} p50 {r['p50']:6.1f}  p95 {r['p95']:6.1f}  ({r['answered']} answered; "
                    f"flood answered {r['attempts_per_s']:.0f}/s)  p95 / baseline p95: {r['p95'] / alone['p95']:.1f}"
                )
            print("  target: p95 < 100 ms during a wrong-password flood")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()


if __name__ == "__main__":
    asyncio.run(main())

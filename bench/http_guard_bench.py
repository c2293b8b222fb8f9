"""What the connection guard of ``mailgate serve`` costs per request (not a test).

Run: ``.venv/bin/python bench/http_guard_bench.py [--requests 20000] [--connections 8] [--rounds 3]``

A uvicorn server in a child process, on uvloop, serving a trivial ASGI application (so that the guard's share
is as large as it can be), once with uvicorn's own httptools protocol (the baseline) and once with
:class:`mailgate.web.connections.ConnectionGuard` around it, taking turns ``--rounds`` times.  Clients send
GET requests over keep-alive connections.  The server's CPU time per request is measured in the server (the
client's speed does not count); printed are the medians and the ratio guarded / baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import time
from typing import Any

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def _serve(port: int, guarded: bool) -> None:
    import uvicorn

    from mailgate.config import HttpSettings
    from mailgate.web.connections import ConnectionGuard

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = f"{time.process_time():.6f}".encode() if scope["path"] == "/cpu" else b"ok"
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    guard = ConnectionGuard(HttpSettings())
    config = uvicorn.Config(
        guard.wrap(app) if guarded else app,
        port=port,
        loop="uvloop",
        http=guard.protocol if guarded else "httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    uvicorn.Server(config).run()


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return await reader.readexactly(length)


async def _cpu(port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return float(await _get(reader, writer, b"GET /cpu HTTP/1.1\r\nHost: bench\r\n\r\n"))
    finally:
        writer.close()


async def _load(port: int, requests: int, connections: int) -> float:
    """The server's CPU seconds per request while ``connections`` clients send ``requests`` in all."""

    async def client(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            await _get(reader, writer, REQUEST)
        writer.close()

    before = await _cpu(port)
    await asyncio.gather(*(client(requests // connections) for _ in range(connections)))
    return (await _cpu(port) - before) / requests


def _one_run(guarded: bool, requests: int, connections: int) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    child = multiprocessing.get_context("spawn").Process(target=_serve, args=(port, guarded), daemon=True)
    child.start()
    try:
        for _ in range(300):  # until it listens; bounded
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        asyncio.run(_load(port, requests // 4, connections))  # warm-up
        return asyncio.run(_load(port, requests, connections))
    finally:
        child.terminate()
        child.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for guarded in (False, True):
            runs[guarded].append(_one_run(guarded, args.requests, args.connections))
    plain, guarded = statistics.median(runs[False]), statistics.median(runs[True])
    for name, median, key in (("uvicorn alone", plain, False), ("with the guard", guarded, True)):
        each = ", ".join(f"{x * 1e6:.1f}" for x in runs[key])
        print(f"server CPU per request, {name:15} {median * 1e6:7.1f} µs median (runs: {each})")
    print(f"ratio guarded / alone: {guarded / plain:.3f}")


if __name__ == "__main__":
    main()

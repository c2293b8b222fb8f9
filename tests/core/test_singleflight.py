"""SingleFlight: concurrent callers of the same key share one run; other keys run on their own."""

from __future__ import annotations

import asyncio

from mailgate.singleflight import SingleFlight


async def test_one_run_per_key_at_a_time_and_a_cancelled_caller_leaves_the_others_theirs() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    runs: list[str] = []
    release = asyncio.Event()

    async def read(key: str) -> str:
        runs.append(key)
        await release.wait()
        return key.upper()

    a1 = asyncio.ensure_future(flight.run("a", lambda: read("a")))
    a2 = asyncio.ensure_future(flight.run("a", lambda: read("a")))
    b = asyncio.ensure_future(flight.run("b", lambda: read("b")))
    await asyncio.sleep(0)
    a1.cancel()
    release.set()
    assert [await a2, await b] == ["A", "B"] and sorted(runs) == ["a", "b"]
    assert a1.cancelled()
    # Done: the next call runs again.
    assert await flight.run("a", lambda: read("a")) == "A" and sorted(runs) == ["a", "a", "b"]
    assert repr(flight) == "<SingleFlight running=0>"

"""ByteBudget: at most its total reserved at once, waiters served first come first served, nothing leaked."""

from __future__ import annotations

import asyncio

import pytest

from mailgate.budget import ByteBudget


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_reserves_up_to_the_total_and_frees_on_exit() -> None:
    budget = ByteBudget(100)
    async with budget.reserve(60) as held:
        assert held == 60 and budget.reserved == 60
        async with budget.reserve(40):
            assert budget.reserved == 100
    assert budget.reserved == 0 and budget.waiting == 0


async def test_a_reservation_that_does_not_fit_waits_for_room() -> None:
    budget = ByteBudget(100)
    order: list[str] = []

    async def take(name: str, size: int, hold: asyncio.Event) -> None:
        async with budget.reserve(size):
            order.append(f"{name} in")
            assert budget.reserved <= budget.total
            await hold.wait()
        order.append(f"{name} out")

    first_done, second_done = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(take("first", 70, first_done))
    await settle()
    second = asyncio.create_task(take("second", 50, second_done))
    await settle()
    assert order == ["first in"] and budget.waiting == 1 and budget.reserved == 70
    first_done.set()
    await settle()
    assert order == ["first in", "first out", "second in"] and budget.reserved == 50
    second_done.set()
    await asyncio.gather(first, second)
    assert budget.reserved == 0 and budget.waiting == 0


async def test_first_come_first_served_a_large_waiter_is_not_overtaken() -> None:
    budget = ByteBudget(100)
    order: list[str] = []
    release = asyncio.Event()

    async def take(name: str, size: int) -> None:
        async with budget.reserve(size):
            order.append(name)
            await release.wait()

    holder = asyncio.create_task(take("holder", 60))
    await settle()
    large = asyncio.create_task(take("large", 80))  # does not fit next to the holder
    await settle()
    small = asyncio.create_task(take("small", 10))  # would fit now, but arrived after the large one
    await settle()
    assert order == ["holder"] and budget.waiting == 2
    release.set()
    await asyncio.gather(holder, large, small)
    assert order == ["holder", "large", "small"]
    assert budget.reserved == 0


async def test_waiters_that_fit_together_are_let_in_together() -> None:
    budget = ByteBudget(100)
    gate, inside = asyncio.Event(), []

    async def take(size: int) -> None:
        async with budget.reserve(size):
            inside.append(size)
            await gate.wait()

    holder_release = asyncio.Event()

    async def holder() -> None:
        async with budget.reserve(100):
            await holder_release.wait()

    h = asyncio.create_task(holder())
    await settle()
    tasks = [asyncio.create_task(take(30)) for _ in range(4)]
    await settle()
    assert inside == [] and budget.waiting == 4
    holder_release.set()
    await settle()
    assert inside == [30, 30, 30] and budget.reserved == 90 and budget.waiting == 1
    gate.set()
    await asyncio.gather(h, *tasks)
    assert budget.reserved == 0


async def test_larger_than_the_total_takes_all_of_it_and_runs_alone() -> None:
    budget = ByteBudget(100)
    async with budget.reserve(10):
        big = asyncio.create_task(_hold(budget, 1_000))
        await settle()
        assert budget.waiting == 1
    assert await big == 100
    assert budget.reserved == 0


async def _hold(budget: ByteBudget, size: int) -> int:
    async with budget.reserve(size) as held:
        assert budget.reserved == budget.total
        return held


async def test_a_waiter_that_gives_up_leaves_no_trace() -> None:
    budget = ByteBudget(100)
    release = asyncio.Event()

    async def take(size: int) -> None:
        async with budget.reserve(size):
            await release.wait()

    holder = asyncio.create_task(take(90))
    await settle()
    blocked = asyncio.create_task(take(50))  # first in line: holds back the one behind it
    await settle()
    behind = asyncio.create_task(take(10))
    await settle()
    assert budget.waiting == 2
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    await settle()
    # The one behind it fits next to the holder: it is let in as soon as the first in line gave up.
    assert budget.waiting == 0 and budget.reserved == 100
    release.set()
    await asyncio.gather(holder, behind)
    assert budget.reserved == 0


async def test_granted_while_being_cancelled_hands_the_bytes_on() -> None:
    budget = ByteBudget(100)
    holding = budget.reserve(100)
    await holding.__aenter__()
    waiter = asyncio.create_task(_hold(budget, 100))
    await settle()
    assert budget.waiting == 1
    await holding.__aexit__(None, None, None)  # grants the waiter its bytes (without running it)...
    assert budget.reserved == 100
    waiter.cancel()  # ...and it is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.reserved == 0 and budget.waiting == 0


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        ByteBudget(0)

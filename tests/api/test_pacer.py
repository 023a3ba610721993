"""The pacer on its own: its window, and why a slow answer keeps its place in it."""

from __future__ import annotations

import asyncio
import time

from breezeway_daemon.api.pacing import WINDOW_S, Pacer

from support.apienv import EnvFactory


def test_the_default_window_is_the_apis_minute_plus_a_margin() -> None:
    pacer = Pacer(180, 4)
    assert (pacer.limit, pacer.window_s) == (180, WINDOW_S)
    assert 60 < WINDOW_S < 61
    assert Pacer(0.5, 1).limit == 1  # a setting below one per window still admits one
    assert Pacer(None, 1).limit is None


async def test_a_slow_answer_keeps_its_place_until_a_window_after_it() -> None:
    """The server counts a request when it arrives, which may be as late as its answer:
    the place is freed a window after the answer, not a window after the start."""
    pacer, window = Pacer(1, 4, window_s=0.3), 0.3
    started = time.monotonic()

    async def slow() -> None:
        async with pacer.slot():
            await asyncio.sleep(0.2)

    async def quick() -> float:
        async with pacer.slot():
            return time.monotonic() - started

    slow_task = asyncio.create_task(slow())
    await asyncio.sleep(0)  # the slow request starts first
    admitted = await quick()
    await slow_task
    assert admitted >= 0.2 + window


async def test_a_limit_below_the_in_flight_cap_waits_for_an_answer() -> None:
    pacer = Pacer(1, 4, window_s=0.1)
    order: list[str] = []

    async def request(name: str, hold: float) -> None:
        async with pacer.slot():
            order.append(f"{name} start")
            await asyncio.sleep(hold)
            order.append(f"{name} end")

    await asyncio.wait_for(asyncio.gather(request("a", 0.05), request("b", 0)), 2)
    assert order == ["a start", "a end", "b start", "b end"]


async def test_a_reload_keeps_one_pacer_per_credential_with_the_new_limits(
    make_env: EnvFactory,
) -> None:
    env = await make_env(requests_per_minute=100, max_in_flight_per_credential=8)
    before = env.api.client("region_1").pacer
    async with before.slot():  # a request in flight across the reload
        reloaded = env.settings.model_copy(
            update={"requests_per_minute": 3.0, "max_in_flight_per_credential": 2}
        )
        env.api.update_settings(reloaded)
    after = env.api.client("region_1").pacer
    assert after is before
    assert (after.limit, after.max_in_flight) == (3, 2)
    # The request made before the reload still counts: two more fit in the window, not three.
    admitted = 0
    for _ in range(3):
        try:
            async with asyncio.timeout(0.2), after.slot():
                admitted += 1
        except TimeoutError:
            break
    assert admitted == 2


async def test_a_listing_request_goes_before_background_requests_that_waited_longer() -> None:
    """Details calls (background) never take an in-flight place a listing request waits for,
    even when they asked first."""
    pacer = Pacer(None, 1)
    order: list[str] = []
    release = asyncio.Event()

    async def request(name: str, background: bool, hold: asyncio.Event | None = None) -> None:
        async with pacer.slot(background):
            order.append(name)
            if hold is not None:
                await hold.wait()

    holder = asyncio.create_task(request("listing 1", False, release))
    await asyncio.sleep(0)  # it holds the only place
    details = [asyncio.create_task(request(f"details {n}", True)) for n in range(3)]
    await asyncio.sleep(0.1)  # the details calls are waiting before the next listing call
    second = asyncio.create_task(request("listing 2", False))
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, second, *details), 5)
    assert order[:2] == ["listing 1", "listing 2"]
    assert sorted(order[2:]) == ["details 0", "details 1", "details 2"]


async def test_background_requests_leave_a_reserve_of_the_window_to_listings() -> None:
    """However many details calls are queued, they use at most 80% of the window, so that
    a listing starting meanwhile is admitted at once."""
    window = 0.5
    pacer = Pacer(10, 10, window_s=window)

    async def background() -> None:
        async with pacer.slot(background=True):
            pass

    flood = [asyncio.create_task(background()) for _ in range(20)]
    pending = set(flood)
    async with asyncio.timeout(5):
        while len(flood) - len(pending) < 8:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.sleep(0.1)  # were more admitted, they would be by now
    assert sum(task.done() for task in flood) == 8
    started = time.monotonic()
    async with asyncio.timeout(window / 4), pacer.slot():  # a listing: at once
        pass
    assert time.monotonic() - started < window / 4
    for task in flood:
        task.cancel()
    await asyncio.gather(*flood, return_exceptions=True)

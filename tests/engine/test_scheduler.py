"""One scheduler task and one heap: due order, replacement, and a bound on concurrent work."""

from __future__ import annotations

import asyncio

from asyncplugin.engine import FakeClock, SystemClock
from asyncplugin.engine.scheduler import Scheduler


async def test_fires_in_due_order_at_due_times() -> None:
    """Keys fire in order of their due times, each at its time on the clock."""
    clock = FakeClock(start=0.0)
    fired: list[tuple[str, float]] = []
    done = asyncio.Event()

    async def handler(key: str) -> None:
        fired.append((key, clock.now()))
        if len(fired) == 3:
            done.set()

    scheduler = Scheduler(clock, handler, max_concurrent=4)
    scheduler.schedule("c", 30.0)
    scheduler.schedule("a", 10.0)
    scheduler.schedule("b", 20.0)
    scheduler.start()
    await done.wait()
    await scheduler.stop()
    assert fired == [("a", 10.0), ("b", 20.0), ("c", 30.0)]


async def test_reschedule_replaces_and_unschedule_forgets() -> None:
    """A key has one live schedule: the newest wins; unscheduled keys never fire."""
    clock = FakeClock(start=0.0)
    fired: list[tuple[str, float]] = []
    done = asyncio.Event()

    async def handler(key: str) -> None:
        fired.append((key, clock.now()))
        done.set()

    scheduler = Scheduler(clock, handler, max_concurrent=1)
    scheduler.schedule("a", 5.0)
    scheduler.schedule("a", 50.0)
    scheduler.schedule("gone", 1.0)
    scheduler.unschedule("gone")
    assert scheduler.due_time("a") == 50.0
    assert scheduler.pending == 1
    scheduler.start()
    await done.wait()
    await scheduler.stop()
    assert fired == [("a", 50.0)]


async def test_concurrency_is_bounded_and_waiting_keys_cost_no_tasks() -> None:
    """At most max_concurrent handlers run; 1,000 waiting keys add no asyncio tasks."""
    clock = FakeClock(start=0.0)
    running = 0
    peak = 0
    finished = 0
    all_done = asyncio.Event()
    release = asyncio.Event()

    async def handler(key: str) -> None:
        nonlocal running, peak, finished
        running += 1
        peak = max(peak, running)
        with clock.busy():
            await release.wait()
        running -= 1
        finished += 1
        if finished == 1000:
            all_done.set()

    scheduler = Scheduler(clock, handler, max_concurrent=8)
    for index in range(1000):
        scheduler.schedule(f"k{index}", 100.0 + index % 3)
    tasks_before = len(asyncio.all_tasks())
    scheduler.start()
    for _ in range(20):
        await asyncio.sleep(0)
    # The scheduler task, its sleep and its wake-up watcher, plus at most 8 workers.
    assert len(asyncio.all_tasks()) - tasks_before <= 3 + 8
    release.set()
    await all_done.wait()
    await scheduler.stop()
    assert peak == 8
    assert scheduler.pending == 0


async def test_handler_errors_do_not_stop_the_scheduler() -> None:
    """A failing handler is logged; later keys still fire."""
    clock = FakeClock(start=0.0)
    fired: list[str] = []
    done = asyncio.Event()

    async def handler(key: str) -> None:
        fired.append(key)
        if key == "bad":
            raise RuntimeError("boom")
        done.set()

    scheduler = Scheduler(clock, handler, max_concurrent=1)
    scheduler.schedule("bad", 1.0)
    scheduler.schedule("good", 2.0)
    scheduler.start()
    await done.wait()
    await scheduler.stop()
    assert fired == ["bad", "good"]


async def test_key_rescheduled_while_running_fires_after_it_finishes() -> None:
    """A key scheduled again while its handler runs is set aside, not run twice at once."""
    clock = FakeClock(start=0.0)
    calls: list[float] = []
    done = asyncio.Event()
    scheduler: Scheduler

    async def handler(key: str) -> None:
        calls.append(clock.now())
        if len(calls) == 1:
            scheduler.schedule("a", 0.0)  # due at once, while this handler still runs
            scheduler.schedule("b", 0.0)
            with clock.busy():
                for _ in range(10):
                    await asyncio.sleep(0)
        elif key == "a":
            done.set()

    scheduler = Scheduler(clock, handler, max_concurrent=4)
    scheduler.schedule("a", 1.0)
    scheduler.start()
    await done.wait()
    await scheduler.stop()
    assert len(calls) == 3


async def test_an_earlier_key_wakes_the_sleeping_scheduler() -> None:
    """While the scheduler sleeps until a late key, a key scheduled earlier fires at its own
    time; the late one still fires at its time afterwards."""
    clock = FakeClock(start=0.0, auto_advance=False)
    fired: list[tuple[str, float]] = []

    async def handler(key: str) -> None:
        fired.append((key, clock.now()))

    scheduler = Scheduler(clock, handler, max_concurrent=4)
    scheduler.schedule("late", 100.0)
    scheduler.start()
    for _ in range(5):
        await asyncio.sleep(0)  # the scheduler is asleep until 100
    assert clock.sleepers == 1
    scheduler.schedule("early", 10.0)
    for _ in range(5):
        await asyncio.sleep(0)
    clock.advance_to(10.0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert fired == [("early", 10.0)]
    clock.advance_to(100.0)
    for _ in range(5):
        await asyncio.sleep(0)
    await scheduler.stop()
    assert fired == [("early", 10.0), ("late", 100.0)]


async def test_on_the_system_clock_keys_fire_at_their_time_never_before() -> None:
    """On the real clock the scheduler sleeps on one loop timer (no task besides its own): a
    key fires once its due time has passed (not before), and an earlier key wakes it out of a
    long sleep."""
    clock = SystemClock()
    tasks_before = len(asyncio.all_tasks())
    fired: dict[str, float] = {}
    done = asyncio.Event()

    async def handler(key: str) -> None:
        fired[key] = clock.now()
        done.set()

    scheduler = Scheduler(clock, handler, max_concurrent=4)
    scheduler.schedule("late", clock.now() + 60.0)
    scheduler.start()
    await asyncio.sleep(0.01)  # asleep until the late key
    assert len(asyncio.all_tasks()) == tasks_before + 1  # the scheduler's own task only
    due = clock.now() + 0.03
    scheduler.schedule("early", due)
    await asyncio.wait_for(done.wait(), timeout=10)
    await scheduler.stop()
    assert list(fired) == ["early"]
    assert fired["early"] >= due

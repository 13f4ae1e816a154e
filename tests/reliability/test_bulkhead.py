"""The scheduler's per-group bound (the engine's per-target bulkhead), on a FakeClock.

Found by the hanging-plugin test: with one global bound on calls in flight, 64 checks hanging on
one plugin until their timeout held every slot, and the other plugins' checks waited 1.5 s each
(p99 lateness 1,465 ms, 33% of the scheduled checks sent). A key whose group is full now waits
in its group's own heap while the keys of other groups fire.
"""

from __future__ import annotations

import asyncio

import pytest

from asyncplugin.engine import Engine, FakeClock
from asyncplugin.engine.scheduler import Scheduler


async def test_a_full_group_does_not_hold_back_other_groups() -> None:
    """Six keys of group "a" (handlers that block) and one of "b" due later: two "a" handlers
    run (max_per_group=2), "b" runs at its time, and each "a" handler that ends lets the next
    "a" key in, earliest first."""
    clock = FakeClock(start=0.0)
    gates = {f"a{i}": asyncio.Event() for i in range(6)}
    started: list[tuple[str, float]] = []
    b_done = asyncio.Event()

    async def handler(key: str) -> None:
        started.append((key, clock.now()))
        if key == "b":
            b_done.set()
            return
        await gates[key].wait()  # a call that hangs until the test lets it end

    scheduler = Scheduler(
        clock, handler, max_concurrent=4, group=lambda key: key[0], max_per_group=2
    )
    for i in range(6):
        scheduler.schedule(f"a{i}", float(i))
    scheduler.schedule("b", 10.0)
    scheduler.start()
    try:
        await asyncio.wait_for(b_done.wait(), timeout=5)
        assert started == [("a0", 0.0), ("a1", 1.0), ("b", 10.0)]
        assert scheduler.in_flight == 2
        gates["a1"].set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert [key for key, _ in started] == ["a0", "a1", "b", "a2"]
        gates["a0"].set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert [key for key, _ in started][-1] == "a3"
        assert scheduler.pending == 2  # a4, a5 wait in their group's heap, still scheduled
    finally:
        for gate in gates.values():
            gate.set()
        await scheduler.stop()


async def test_unscheduled_key_set_aside_never_fires() -> None:
    """A key set aside because its group was full and then unscheduled is dropped, not run."""
    clock = FakeClock(start=0.0)
    gate = asyncio.Event()
    started: list[str] = []

    async def handler(key: str) -> None:
        started.append(key)
        if key == "a0":
            await gate.wait()

    scheduler = Scheduler(clock, handler, max_concurrent=4, group=lambda k: k[0], max_per_group=1)
    scheduler.schedule("a0", 0.0)
    scheduler.schedule("a1", 1.0)
    scheduler.schedule("a2", 2.0)
    scheduler.start()
    try:
        for _ in range(50):
            await asyncio.sleep(0)
        assert started == ["a0"]
        scheduler.unschedule("a1")
        gate.set()
        for _ in range(50):
            await asyncio.sleep(0)
        assert started == ["a0", "a2"]
    finally:
        await scheduler.stop()


def test_engine_per_target_bound_defaults_to_half() -> None:
    """max_concurrent_rpcs_per_target defaults to half of max_concurrent_rpcs, rounded up."""
    assert Engine(max_concurrent_rpcs=64)._max_per_target == 32
    assert Engine(max_concurrent_rpcs=3)._max_per_target == 2
    assert Engine(max_concurrent_rpcs=1)._max_per_target == 1
    assert Engine(max_concurrent_rpcs_per_target=64)._max_per_target == 64
    with pytest.raises(ValueError, match="max_concurrent_rpcs_per_target must be >= 1"):
        Engine(max_concurrent_rpcs_per_target=0)

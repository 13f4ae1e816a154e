"""The fake clock jumps only when everything waits on it; the system clock reads wall time."""

from __future__ import annotations

import asyncio
import time

import pytest

from asyncplugin.engine import FakeClock, SystemClock


async def test_fake_clock_jumps_to_the_earliest_sleeper() -> None:
    """With nothing busy, sleepers wake in order at their exact simulated times, instantly."""
    clock = FakeClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, when: float) -> None:
        await clock.sleep_until(when)
        woke.append((name, clock.now()))

    started = time.monotonic()
    await asyncio.gather(sleeper("late", 3700.0), sleeper("early", 160.0))
    assert woke == [("early", 160.0), ("late", 3700.0)]
    assert time.monotonic() - started < 1.0


async def test_fake_clock_holds_still_while_busy() -> None:
    """No simulated time passes while a busy() block is open."""
    clock = FakeClock(start=0.0)
    task = asyncio.create_task(clock.sleep_until(10.0))
    with clock.busy():
        for _ in range(50):
            await asyncio.sleep(0)
        assert clock.now() == 0.0
        assert not task.done()
    await task
    assert clock.now() == 10.0


async def test_fake_clock_manual_mode() -> None:
    """With auto_advance off, only advance() moves time and wakes sleepers."""
    clock = FakeClock(start=0.0, auto_advance=False)
    task = asyncio.create_task(clock.sleep_until(5.0))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()
    assert clock.sleepers == 1
    clock.advance(4.0)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(1.0)
    await task
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1)


async def test_cancelled_sleeper_is_skipped() -> None:
    """A cancelled sleep does not hold the clock at its time."""
    clock = FakeClock(start=0.0)
    doomed = asyncio.create_task(clock.sleep_until(5.0))
    await asyncio.sleep(0)
    doomed.cancel()
    await clock.sleep_until(50.0)
    assert clock.now() == 50.0


async def test_sleep_until_the_past_returns_at_once() -> None:
    """Sleeping until a time already passed does not move the clock."""
    clock = FakeClock(start=10.0)
    await clock.sleep_until(5.0)
    assert clock.now() == 10.0


async def test_system_clock_is_wall_time() -> None:
    """SystemClock reads epoch seconds and returns from a past sleep_until at once."""
    clock = SystemClock()
    assert abs(clock.now() - time.time()) < 1.0
    await clock.sleep_until(clock.now() - 1)
    with clock.busy():
        pass

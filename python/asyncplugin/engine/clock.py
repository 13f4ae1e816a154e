"""The engine's injected clock: `SystemClock` in production, `FakeClock` in tests.

The engine reads time only through a `Clock` and waits only through `Clock.sleep_until`, so a
whole polling scenario (an hour of backoff) runs on a `FakeClock` in milliseconds of wall time.

Why wall-clock epoch seconds and not a monotonic clock: schedules are persisted (next check time,
absolute deadline) and must mean the same instant after the engine restarts, possibly on another
boot where a monotonic clock starts again from zero. The cost: a wall-clock step (NTP, an
operator changing the time) moves every schedule by that step. `SystemClock.sleep_until`
re-reads the time when it wakes, and the scheduler re-checks due times after every wake-up, so a
step makes checks late or early by at most that step, never lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Iterator
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]

_SETTLE_ROUNDS = 8
"""Event-loop iterations a FakeClock lets pass, with nothing busy, before it jumps."""


class Clock(Protocol):
    """Time for the engine: read it, wait for it, and say when real work is in flight."""

    def now(self) -> float:
        """The current time in epoch seconds (UTC)."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Returns once `now() >= when` (at once if that is already so)."""
        ...

    def busy(self) -> contextlib.AbstractContextManager[None]:
        """Marks real work (an RPC, a store write) in flight for the block's duration.

        A real clock ignores it. A fake clock does not jump forward while any block is open, so
        simulated time never passes while the engine waits for a plugin's real answer.
        """
        ...


class SystemClock:
    """The real wall clock (`time.time`) and asyncio's timer."""

    def now(self) -> float:
        """The current time in epoch seconds."""
        return time.time()

    async def sleep_until(self, when: float) -> None:
        """Sleeps until the wall clock reads `when`, re-checking after each wake-up."""
        while True:
            remaining = when - time.time()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    def busy(self) -> contextlib.AbstractContextManager[None]:
        """A no-op: real time passes anyway."""
        return contextlib.nullcontext()


class FakeClock:
    """Simulated time that jumps forward as soon as everything waits on it.

    `now()` starts at `start` (default 2026-01-01T00:00:00Z) and moves only when the clock is
    advanced. With `auto_advance=True` (the default) it advances by itself: whenever some
    coroutine sleeps on it and no `busy()` block is open, it lets the event loop run a few
    iterations (so ready work goes first), then jumps straight to the earliest sleeper's wake-up
    time and wakes every sleeper due by then. The engine opens `busy()` around each RPC and store
    write, so simulated time passes only while the engine is purely waiting: an hour of backoff
    runs in well under a second, and the sequence of events is the same on every run.

    Tests may also advance by hand (`advance`, `advance_to`), hold time still with their own
    `busy()` block (for example while they stop a server), or pass `auto_advance=False` and drive
    time entirely by hand.
    """

    def __init__(self, start: float = 1_767_225_600.0, *, auto_advance: bool = True) -> None:
        self._now = float(start)
        self._auto_advance = auto_advance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()
        self._holds = 0
        self._settling = False

    def now(self) -> float:
        """The simulated time in epoch seconds."""
        return self._now

    async def sleep_until(self, when: float) -> None:
        """Waits until simulated time reaches `when`."""
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._sequence), future))
        self._kick()
        await future

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Holds simulated time still for the block's duration."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if self._holds == 0:
                self._kick()

    def advance(self, seconds: float) -> None:
        """Moves time forward by `seconds` and wakes every sleeper now due."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> None:
        """Moves time forward to `when` (never back) and wakes every sleeper now due."""
        self._now = max(self._now, when)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many coroutines are sleeping on this clock."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def _kick(self) -> None:
        if not self._auto_advance or self._settling:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._settling = True
        loop.call_soon(self._settle, loop, _SETTLE_ROUNDS)

    def _settle(self, loop: asyncio.AbstractEventLoop, rounds: int) -> None:
        if self._holds > 0:
            self._settling = False
            return
        if rounds > 0:
            loop.call_soon(self._settle, loop, rounds - 1)
            return
        self._settling = False
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        if self._sleepers:
            self.advance_to(self._sleepers[0][0])
            # Sleepers may remain whose waker will not come back (a cancelled wait): keep going.
            self._kick()

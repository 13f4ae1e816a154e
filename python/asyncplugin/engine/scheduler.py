"""One heap of due times, one scheduler task, and a bound on the work running at once.

Every waiting task is one heap entry rather than a sleeping coroutine (104 B against 1,270 B per
task, measured in docs/performance.md section 2; see docs/architecture.md, "Where time comes
from"). The single scheduler task sleeps on the injected clock until the earliest entry is due,
takes a slot from the concurrency bound, and starts the handler for that key in a worker task.
Workers exist only while their call is in flight, so their number never exceeds
`max_concurrent`; due entries wait in the heap while every slot is taken.

Each key has at most one live entry: `schedule` replaces the previous one (the old heap item is
left in place and skipped when popped, which keeps both operations O(log n)).

Keys may belong to groups (the engine groups tasks by plugin target) with a bound of their own,
`max_per_group`: a bulkhead, so the calls of one plugin that hangs take at most that many of the
`max_concurrent` slots and the other plugins' keys still fire on time. A due key whose group is
full is set aside in its group's own heap and goes back to the main heap, earliest first, one
for each of the group's handlers that ends.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from .clock import Clock, SystemClock

__all__ = ["Scheduler"]

_log = logging.getLogger(__name__)

Handler = Callable[[str], Awaitable[None]]


class Scheduler:
    """Runs `handler(key)` when each key falls due, at most `max_concurrent` at a time.

    Args:
        clock: the injected clock; due times are in its epoch seconds.
        handler: the coroutine function run for a due key. Its exceptions are logged and
            swallowed (the handler is expected to record its own failures).
        max_concurrent: the most handlers running at once.
        group: the group of a key (None: no groups).
        max_per_group: the most handlers running at once for the keys of one group (None: no
            bound but `max_concurrent`).
    """

    def __init__(
        self,
        clock: Clock,
        handler: Handler,
        *,
        max_concurrent: int,
        group: Callable[[str], str] | None = None,
        max_per_group: int | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if max_per_group is not None and max_per_group < 1:
            raise ValueError(f"max_per_group must be >= 1 or None, got {max_per_group}")
        self._clock = clock
        self._handler = handler
        self._max_concurrent = max_concurrent
        self._group = group if max_per_group is not None else None
        self._max_per_group = max_per_group
        self._group_running: Counter[str] = Counter()
        self._worker_group: dict[str, str] = {}
        self._blocked: dict[str, list[tuple[float, int, str]]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._live: dict[str, tuple[float, int]] = {}
        self._sequence = itertools.count()
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._deferred: set[str] = set()
        self._runner: asyncio.Task[None] | None = None

    def schedule(self, key: str, due: float) -> None:
        """Runs the handler for `key` at `due` (replacing any earlier schedule of `key`)."""
        entry = (due, next(self._sequence))
        self._live[key] = entry
        heapq.heappush(self._heap, (entry[0], entry[1], key))
        self._wakeup.set()

    def unschedule(self, key: str) -> None:
        """Forgets the pending schedule of `key`, if any (a running handler goes on)."""
        self._live.pop(key, None)

    def due_time(self, key: str) -> float | None:
        """When `key` is next due, or None if it is not scheduled."""
        entry = self._live.get(key)
        return entry[0] if entry else None

    @property
    def pending(self) -> int:
        """How many keys are scheduled."""
        return len(self._live)

    @property
    def in_flight(self) -> int:
        """How many handlers are running."""
        return len(self._workers)

    def group_load(self) -> dict[str, tuple[int, int]]:
        """Per group: (handlers running, due keys set aside because the group is at its bound).

        The second figure may count a few keys unscheduled since they were set aside (they are
        dropped when their turn comes); it reads the heaps without changing them.
        """
        groups = set(self._group_running) | set(self._blocked)
        return {
            group: (self._group_running.get(group, 0), len(self._blocked.get(group, ())))
            for group in groups
        }

    def start(self) -> None:
        """Starts the scheduler task in the running loop."""
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name="asyncplugin-scheduler"
            )

    async def stop(self, *, grace_s: float = 0.0) -> None:
        """Stops scheduling; lets running handlers finish for `grace_s`, then cancels them."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        workers = list(self._workers.values())
        if workers and grace_s > 0:
            await asyncio.wait(workers, timeout=grace_s)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                key = await self._next_due()
            except BaseException:
                self._slots.release()
                raise
            if self._group is not None:
                group = self._group(key)
                self._group_running[group] += 1
                self._worker_group[key] = group
            worker = asyncio.get_running_loop().create_task(self._work(key))
            self._workers[key] = worker

    async def _next_due(self) -> str:
        """Waits until the earliest live entry is due, pops it, and returns its key."""
        while True:
            while self._heap:
                due, sequence, key = self._heap[0]
                if self._live.get(key) != (due, sequence):
                    heapq.heappop(self._heap)  # replaced or unscheduled
                elif key in self._workers:
                    # Its handler is still running (it rescheduled itself before returning):
                    # set the entry aside so it does not block the keys behind it.
                    heapq.heappop(self._heap)
                    self._deferred.add(key)
                elif self._group_full(key, due):
                    heapq.heappop(self._heap)  # set aside in its group's heap
                else:
                    break
            self._wakeup.clear()
            if not self._heap:
                await self._wakeup.wait()
                continue
            due, _, key = self._heap[0]
            if due <= self._clock.now():
                heapq.heappop(self._heap)
                del self._live[key]
                return key
            await self._sleep_or_wake(due)

    def _group_full(self, key: str, due: float) -> bool:
        """True if `key` is due and its group is at its bound; it is then set aside."""
        if self._group is None or self._max_per_group is None or due > self._clock.now():
            return False
        group = self._group(key)
        if self._group_running[group] < self._max_per_group:
            return False
        heapq.heappush(self._blocked.setdefault(group, []), (due, self._live[key][1], key))
        return True

    def _unblock_one(self, group: str) -> None:
        """Moves the group's earliest set-aside key that is still live back to the main heap."""
        blocked = self._blocked.get(group)
        while blocked:
            due, sequence, key = heapq.heappop(blocked)
            if self._live.get(key) == (due, sequence):
                heapq.heappush(self._heap, (due, sequence, key))
                break
        if not blocked:
            self._blocked.pop(group, None)

    async def _sleep_or_wake(self, due: float) -> None:
        """Sleeps until `due` on the clock or until `_wakeup` is set, whichever comes first.

        The scheduler sleeps about once per check when checks are spread out, so this is kept
        cheap: the clock's sleep ends by setting `_wakeup`, and the scheduler waits on that
        event alone (no waker task, no `asyncio.wait`, no gather).
        """
        loop = asyncio.get_running_loop()
        if type(self._clock) is SystemClock:
            # Real time passes anyway: one timer instead of a task sleeping on the clock. If it
            # fires a hair early, `_next_due` finds nothing due and sleeps again.
            timer = loop.call_later(max(0.0, due - self._clock.now()), self._wakeup.set)
            try:
                await self._wakeup.wait()
            finally:
                timer.cancel()
            return
        sleeper = loop.create_task(self._clock.sleep_until(due))
        sleeper.add_done_callback(self._slept)
        try:
            await self._wakeup.wait()
        finally:
            sleeper.cancel()

    def _slept(self, sleeper: asyncio.Task[None]) -> None:
        """The clock's sleep ended (or failed): wake the scheduler, which looks at the time."""
        if not sleeper.cancelled():
            sleeper.exception()  # retrieved: a failing clock only makes the scheduler look again
            self._wakeup.set()

    async def _work(self, key: str) -> None:
        try:
            await self._handler(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("scheduled work for %s failed", key)
        finally:
            self._workers.pop(key, None)
            group = self._worker_group.pop(key, None)
            if group is not None:
                self._group_running[group] -= 1
                if not self._group_running[group]:
                    del self._group_running[group]
                self._unblock_one(group)
            if key in self._deferred:
                self._deferred.discard(key)
                entry = self._live.get(key)
                if entry is not None:
                    heapq.heappush(self._heap, (entry[0], entry[1], key))
            self._slots.release()
            self._wakeup.set()

"""The engine's side of a shared store: lease due work, time it, and give it back.

With a private store (memory, SQLite) the engine loads every unfinished task at start and
schedules them all in its heap; nothing here runs. With a `SharedStore` (PostgreSQL, several
workers) `Leasing` replaces that load:

  - a pump task leases the tasks due within the store's horizon (`lease_due`, up to the free
    capacity) and puts them in the same heap as always, at `now + due_in_s` on this worker's
    clock (the due time itself was decided on the database's clock); it then waits for a NOTIFY
    hint (new work, a cancel) or the poll interval, whichever comes first;
  - every step runs pinned to the lease it started under (`SharedStore.pin`), and every call is
    made only while the lease surely outlasts it (`ensure_lease`: the policy's check timeout
    plus a margin, extended under the same fence when needed);
  - a write refused by the fence (LeaseLost) drops the task from this worker: another worker
    runs it now, from what it recorded;
  - a task whose next call is due beyond the horizon is given back by its own write (the store
    decides) and leaves this worker's heap, so a worker holds only near work;
  - `wait`, `cancel` and `watch` of a task another worker holds go through the store: a cancel
    is requested (flag + hint) and carried out by the holder; waits and watches read the store
    at a growing interval (50 ms to 1 s), and are woken at once by this worker's own writes;
  - a completion or progress report the plugin sends to this worker for a task another worker
    holds takes the task over (`take_over`: a new token, so exactly one end is recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from .errors import LeaseLost, StoreError, TaskNotFound, WaitTimeout
from .records import TaskRecord, TaskUpdate
from .store.base import Lease, SharedStore

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["LEASE_MARGIN_S", "Leasing"]

_log = logging.getLogger(__name__)

LEASE_MARGIN_S = 2.0
"""What a lease must have left beyond a call's timeout when the call starts."""

_POLL_FIRST_S = 0.05
_POLL_MAX_S = 1.0


class Leasing:
    """Runs an engine on a shared store (see the module docstring)."""

    def __init__(self, engine: Engine, store: SharedStore, *, max_held: int) -> None:
        self._engine = engine
        self._store = store
        self._max_held = max_held
        self._pump: asyncio.Task[None] | None = None
        self._cancels: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._enough_room = max(1, min(store.terms.batch, max_held // 4))

    def start(self) -> None:
        """Starts the pump in the running loop."""
        self._pump = asyncio.get_running_loop().create_task(self._run(), name="asyncplugin-lease")

    async def stop(self) -> None:
        """Stops leasing (leases held are given back when the store closes)."""
        tasks = [t for t in (self._pump, *self._cancels) if t is not None]
        self._pump = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the pump ---------------------------------------------------------------------------

    async def _run(self) -> None:
        terms = self._store.terms
        scan_cancels_at = 0.0
        hinted = True
        while True:
            try:
                asked = min(self._free(), terms.batch)
                leases = await self._store.lease_due(limit=asked) if asked > 0 else []
                for lease in leases:
                    self._adopt(lease)
                if hinted or time.monotonic() >= scan_cancels_at:
                    for task_id in await self._store.cancel_requests():
                        self._cancel_held(task_id)
                    scan_cancels_at = time.monotonic() + terms.poll_interval_s
                hinted = False
                if asked == 0 or len(leases) == asked:
                    # More may be due: lease again as soon as there is room for a batch.
                    await self._wait_for_room(terms.poll_interval_s)
                else:
                    # Nothing else is due within the horizon: wait for a hint or the next poll.
                    hinted = await self._store.wait_for_work(terms.poll_interval_s)
            except asyncio.CancelledError:
                raise
            except StoreError as err:
                self._engine._store_failed(err)
                return
            except Exception:
                _log.exception("leasing due tasks failed; retrying")
                await asyncio.sleep(terms.poll_interval_s)

    def _free(self) -> int:
        return self._max_held - len(self._engine._active)

    async def _wait_for_room(self, timeout_s: float) -> None:
        """Returns once a batch fits (at once if it does), or after `timeout_s`."""
        self._room.clear()
        if self._free() >= self._enough_room:
            await asyncio.sleep(0)  # let the adopted tasks start before the next statement
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), timeout_s)

    def freed(self) -> None:
        """A task left this worker: wake the pump once a batch fits again."""
        if self._free() >= self._enough_room:
            self._room.set()

    def _adopt(self, lease: Lease) -> None:
        engine = self._engine
        scheduler = engine._scheduler
        if scheduler is None:
            return
        record = lease.record
        engine._active[record.task_id] = record
        if lease.cancel_requested:
            self._cancel_held(record.task_id)
        else:
            scheduler.schedule(record.task_id, engine.clock.now() + lease.due_in_s)

    def _cancel_held(self, task_id: str) -> None:
        """Carries out a cancel requested through another worker, for a task held here."""
        if task_id not in self._engine._active:
            return

        async def cancel() -> None:
            try:
                await self._engine.cancel(task_id)
            except (LeaseLost, StoreError, TaskNotFound):
                pass  # another worker has it now, or the engine stopped: it cancels it
            except Exception:
                _log.exception("task %s: a requested cancel failed", task_id)

        task = asyncio.get_running_loop().create_task(cancel())
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    # -- hooks the engine calls -------------------------------------------------------------

    async def take_over(self, task_id: str) -> bool:
        """Makes this worker the task's holder (see `SharedStore.take_over`); False if the
        task has ended."""
        lease = await self._store.take_over(task_id)
        if lease is None:
            return False
        self._adopt(lease)
        return True

    def pin(self, task_id: str) -> contextlib.AbstractContextManager[None]:
        """The writes of one step, bound to the lease it starts under."""
        return self._store.pin(task_id)

    async def before_call(self, record: TaskRecord) -> None:
        """Makes the lease outlast the call about to be made (check timeout plus a margin).

        The cancel request sent after a task's end was recorded needs no lease: a finished
        task is never leased again, so no other worker calls the plugin for it.
        """
        if record.is_terminal and not self._store.holds(record.task_id):
            return
        driver = self._engine._driver
        timeout_s = driver.policy_for(record).check_timeout_s if driver else 0.0
        await self._store.ensure_lease(record.task_id, need_s=timeout_s + LEASE_MARGIN_S)

    def after_write(self, record: TaskRecord) -> None:
        """Drops an unfinished task from this worker if its write gave the lease back."""
        if not record.is_terminal and not self._store.holds(record.task_id):
            self.drop(record.task_id)

    def lost(self, task_id: str) -> None:
        """A write was refused by the fence: drop the task unless a newer lease is held."""
        if not self._store.holds(task_id):
            self.drop(task_id)

    def drop(self, task_id: str) -> None:
        """Forgets a task this worker no longer holds (another worker runs it)."""
        self._engine._active.pop(task_id, None)
        if self._engine._scheduler is not None:
            self._engine._scheduler.unschedule(task_id)
        self.freed()

    def held_only(self, schedule: Callable[[str, float], None]) -> Callable[[str, float], None]:
        """The driver's `schedule`, skipping tasks this worker gave back with their write."""

        def scheduled(task_id: str, due: float) -> None:
            if task_id in self._engine._active:
                schedule(task_id, due)

        return scheduled

    # -- tasks held by other workers -----------------------------------------------------------

    async def wait(self, record: TaskRecord, timeout_s: float | None) -> TaskRecord:
        """Waits for a task's end wherever it runs (see the module docstring)."""
        engine = self._engine
        clock = engine.clock
        until = clock.now() + timeout_s if timeout_s is not None else None
        delay = _POLL_FIRST_S
        while not record.is_terminal:
            step = delay if until is None else min(delay, until - clock.now())
            if step <= 0:
                raise WaitTimeout(record.task_id, timeout_s or 0.0)
            with contextlib.suppress(WaitTimeout):
                return await engine._notifier.wait(record, clock, step)
            delay = min(delay * 1.5, _POLL_MAX_S)
            found = await self._store.get(record.task_id)
            if found is None:
                raise TaskNotFound(record.task_id)
            record = found
        return record

    async def cancel(self, task_id: str) -> TaskRecord:
        """Asks the task's holder to cancel it; returns the record once it has ended, or the
        current record if the holder has not recorded the cancel within a lease's length."""
        if not await self._store.request_cancel(task_id):
            return await self._engine.get(task_id)
        record = await self._engine.get(task_id)
        limit_s = self._store.terms.lease_s + self._store.terms.horizon_s
        try:
            return await self.wait(record, limit_s)
        except WaitTimeout:
            return await self._engine.get(task_id)

    async def follow(self, task_id: str) -> AsyncIterator[TaskUpdate]:
        """Every change of one task wherever it runs: this worker's at once, others' as the
        store shows them (a newer revision, with the history entries recorded since)."""
        engine = self._engine
        queue = engine._notifier.subscribe(task_id)
        try:
            record = await engine.get(task_id)
            yield TaskUpdate(record=record)
            delay = _POLL_FIRST_S
            while not record.is_terminal:
                try:
                    update = await asyncio.wait_for(queue.get(), delay)
                except TimeoutError:
                    delay = min(delay * 1.5, _POLL_MAX_S)
                    update = await self._changed(task_id, record)
                else:
                    if update is None:
                        return  # the engine stopped
                    delay = _POLL_FIRST_S
                if update is not None and update.record.revision > record.revision:
                    record = update.record
                    yield update
        finally:
            engine._notifier.unsubscribe(task_id, queue)

    async def _changed(self, task_id: str, last: TaskRecord) -> TaskUpdate | None:
        found = await self._store.get(task_id)
        if found is None or found.revision <= last.revision:
            return None
        checks = await self._store.checks_after(task_id, last.revision)
        return TaskUpdate(
            record=found, checks=tuple(c for c in checks if c.revision <= found.revision)
        )

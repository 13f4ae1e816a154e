"""The engine's state and its per-check path: a task's lock, the scheduler's handler, the commit.

Every due check runs `_fire` (under the task's `_TaskLock`), which runs the task's step; every
outcome goes through `_commit`: recorded atomically, then cached and published. The rest of
the `Engine` (see `engine.py`) is built on this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable, Mapping

from .clock import Clock
from .completion import CompletionIssuer
from .errors import LeaseLost, StoreError, TaskNotFound
from .leasing import Leasing
from .notify import Notifier
from .policy import PollingPolicy, TransportRetryPolicy
from .records import CheckRecord, TaskRecord, TaskUpdate, replace_task
from .scheduler import Scheduler
from .steps import Driver
from .store.base import TaskStore
from .telemetry import EngineTelemetry, StoreWriter
from .transport import Transport

__all__ = ["Dispatch"]

# The Engine's logger, whichever of its modules logs.
_log = logging.getLogger("asyncplugin.engine.engine")


class Dispatch:
    """The engine's state (set by `Engine.__init__`) and what runs for every check."""

    store: TaskStore
    clock: Clock
    policy: PollingPolicy
    retry_policy: TransportRetryPolicy
    _max_concurrent: int
    _max_per_target: int
    _owns_transport: bool
    _transport: Transport | None
    _rng: random.Random
    _notifier: Notifier
    _grace_s: float
    _completion: CompletionIssuer | None
    _request_locks: dict[str, asyncio.Lock]
    _active: dict[str, TaskRecord]
    """The unfinished tasks this engine runs, by id: the cache of their current records."""
    _locks: dict[str, asyncio.Lock]
    _scheduler: Scheduler | None
    _driver: Driver | None
    _leasing: Leasing | None
    _store_failure: StoreError | None
    _telemetry: EngineTelemetry | None
    _writes: StoreWriter
    _unhook_telemetry: Callable[[], None] | None

    async def get(self, task_id: str) -> TaskRecord:
        """The task's current record.

        Raises:
            TaskNotFound: no task has this id.
        """
        record = self._active.get(task_id)
        if record is None:
            record = await self.store.get(task_id)
        if record is None:
            raise TaskNotFound(task_id)
        return record

    def _store_failed(self, err: StoreError) -> None:
        """Stops the engine's work after a failed store write, waking every waiter with it."""
        if self._store_failure is not None:
            return
        self._store_failure = err
        _log.error("the task store failed; the engine stops sending calls: %s", err)
        self._notifier.close(err)

    def _target_of(self, task_id: str) -> str:
        """The scheduler's group of a task: its plugin's target."""
        record = self._active.get(task_id)
        return record.target if record is not None else ""

    def _pinned(self, task_id: str) -> contextlib.AbstractContextManager[None]:
        """On a shared store, binds the block's writes to the lease held now."""
        if self._leasing is None:
            return contextlib.nullcontext()
        return self._leasing.pin(task_id)

    def _locked(self, task_id: str) -> _TaskLock:
        """Holds the task's lock (one call in flight per task); forgets it once it is done."""
        return _TaskLock(self._locks, self._active, task_id)

    async def _fire(self, task_id: str) -> None:
        """The scheduler's handler: run the task's due step under its lock."""
        async with self._locked(task_id):
            record = self._active.get(task_id)
            if record is None or self._driver is None or self._store_failure is not None:
                return
            with self.clock.busy():
                try:
                    with self._pinned(task_id):
                        await self._driver.step(record)
                except asyncio.CancelledError:
                    raise
                except StoreError:
                    return  # the engine has stopped its work (see _store_failed)
                except LeaseLost:
                    assert self._leasing is not None
                    self._leasing.lost(task_id)  # another worker runs the task now
                    return
                except Exception as err:
                    # A bug while handling one task fails that task only (logged).
                    _log.exception("task %s: engine error", task_id)
                    current = self._active.get(task_id)
                    if current is not None:
                        await self._driver.fail_internal(current, err)

    async def _commit(
        self, record: TaskRecord | None, *checks: CheckRecord, revised: bool = False
    ) -> None:
        """Records atomically (the change gets the task's next revision, and so do its history
        entries), then updates the cache and tells listeners. `revised`: the record already
        carries that next revision (see `steps.Commit`)."""
        try:
            if record is None:
                if not checks:
                    return
                record = await self.get(checks[0].task_id)
                revised = False
            if revised:
                revision = record.revision
            else:
                revision = record.revision + 1
                record = replace_task(record, revision=revision)
            checks = tuple(
                check
                if check.revision == revision
                else dataclasses.replace(check, revision=revision)
                for check in checks
            )
            await self._writes.record(record, *checks)
            if self._leasing is not None:
                self._leasing.after_write(record)
        except StoreError as err:
            self._store_failed(err)
            raise
        except LeaseLost as err:
            if self._leasing is not None:
                self._leasing.lost(err.task_id)
            raise
        if record.is_terminal:
            self._active.pop(record.task_id, None)
            if self._leasing is not None:
                self._leasing.freed()
        elif self._leasing is None or record.task_id in self._active:
            self._active[record.task_id] = record
        self._notifier.publish(TaskUpdate(record=record, checks=checks))


class _TaskLock:
    """`async with`: holds one task's lock, made on first use and dropped once the task has
    ended and nobody holds or waits for it. A class rather than an asynccontextmanager: every
    step takes it."""

    __slots__ = ("_active", "_lock", "_locks", "_task_id")

    def __init__(
        self, locks: dict[str, asyncio.Lock], active: Mapping[str, TaskRecord], task_id: str
    ) -> None:
        self._locks = locks
        self._active = active
        self._task_id = task_id
        lock = locks.get(task_id)
        if lock is None:
            lock = locks[task_id] = asyncio.Lock()
        self._lock = lock

    async def __aenter__(self) -> None:
        try:
            await self._lock.acquire()
        except BaseException:
            self._forget()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()
        self._forget()

    def _forget(self) -> None:
        if self._task_id not in self._active and not self._lock.locked():
            self._locks.pop(self._task_id, None)

"""The engine: submit work to plugins, poll it to the end, and keep the record.

    async with Engine(store=SqliteStore("tasks.db")) as engine:
        record = await engine.invoke("127.0.0.1:50051", payload={"audio_url": "..."})
        print(record.state, record.result_as(dict))

One Engine runs many tasks on many plugins in one event loop: one scheduler task owns a heap of
due times, and at most `max_concurrent_rpcs` calls are in flight. The store is the truth: each
outcome is recorded before the next call is scheduled, and `start()` rebuilds the schedule from
the store, so an engine restarted on the same SQLite file (even after kill -9) resumes its
RUNNING tasks at their recorded next check times, never repeats an initiation whose answer was
recorded, and loses no finished result.

The one window (documented in plugin.proto, RequestContext.idempotency_key): if the engine dies
after sending an initiating call and before recording its answer, the task is still WAITING in
the store and the restarted engine initiates it again, with the SAME idempotency key, so a
plugin that passes the key to its remote system (or remembers it) drops the duplicate. An
initiating call that fails UNAVAILABLE or times out is retried the same way.

A store that fails a write (a full disk, a read-only file) stops the engine's work at once: the
failed write is rolled back whole, `submit`, `cancel` and `wait` raise StoreError naming the file
and the cause, waiters are woken with it, and no further call is sent. What was recorded stays
as it was; an engine started again on the repaired file resumes from there (a call whose answer
could not be recorded is sent again, with the same check number and idempotency key).
"""

from __future__ import annotations

import builtins
import random
from collections.abc import AsyncIterator, Callable, Collection
from types import TracebackType

from asyncplugin.protocol import TaskState
from asyncplugin.protocol.methods import GENERIC_METHOD

from .clock import Clock, SystemClock
from .completion import CompletionIssuer
from .errors import StoreError
from .notify import ChangeHook, Notifier
from .policy import PollingPolicy, TransportRetryPolicy
from .records import CheckRecord, TaskOptions, TaskRecord, TaskUpdate
from .startup import ENGINE_NAME, Startup
from .store.base import TaskStore
from .store.memory import MemoryStore
from .submission import Payload
from .telemetry import EngineTelemetry
from .transport import Transport

__all__ = ["ENGINE_NAME", "Engine", "Payload"]


class Engine(Startup):
    """Drives asynchronous plugin calls to completion (asyncio API).

    The class is built in layers, one module each: `dispatch` (the state and the per-check
    path), `submission`, `control` (cancel, complete, update, delete) and `startup` (resuming
    the store's tasks); this module adds the configuration, `start`/`stop` and reading tasks.

    Args:
        store: where tasks live (default: a fresh MemoryStore). Opened by `start`, closed by
            `stop`. One engine per store at a time.
        clock: time and sleep (default: SystemClock; FakeClock in tests).
        policy: the default polling policy (tasks may override it in TaskOptions).
        retry_policy: the default transport retry policy.
        max_concurrent_rpcs: the most calls in flight at once, across all tasks and plugins.
        max_concurrent_rpcs_per_target: the most calls in flight at once to one target (None:
            half of `max_concurrent_rpcs`, rounded up). A bulkhead: a plugin whose calls hang
            until `check_timeout_s` holds at most this many slots, so the tasks of the other
            plugins keep their schedule.
        transport: how plugins are called (default: a GrpcTransport the engine owns and closes).
        rng: the jitter source; pass `random.Random(seed)` for reproducible schedules.
        on_change: called after every recorded change (see `notify.ChangeHook`).
        shutdown_grace_s: how long `stop` lets calls in flight finish before cancelling them.
        telemetry: traces and Prometheus metrics (see `EngineTelemetry`); None: none, and no
            instrumentation runs at all.
        completion: when given, every call carries its address and a completion token for the
            task in `RequestContext`, so the plugin can finish the task itself (`complete`).
    """

    def __init__(
        self,
        *,
        store: TaskStore | None = None,
        clock: Clock | None = None,
        policy: PollingPolicy | None = None,
        retry_policy: TransportRetryPolicy | None = None,
        max_concurrent_rpcs: int = 64,
        max_concurrent_rpcs_per_target: int | None = None,
        transport: Transport | None = None,
        rng: random.Random | None = None,
        on_change: ChangeHook | None = None,
        shutdown_grace_s: float = 5.0,
        telemetry: EngineTelemetry | None = None,
        completion: CompletionIssuer | None = None,
    ) -> None:
        if max_concurrent_rpcs < 1:
            raise ValueError(f"max_concurrent_rpcs must be >= 1, got {max_concurrent_rpcs}")
        self.store = store if store is not None else MemoryStore()
        self.clock = clock if clock is not None else SystemClock()
        self.policy = policy if policy is not None else PollingPolicy()
        self.retry_policy = retry_policy if retry_policy is not None else TransportRetryPolicy()
        if max_concurrent_rpcs_per_target is None:
            max_concurrent_rpcs_per_target = (max_concurrent_rpcs + 1) // 2
        if max_concurrent_rpcs_per_target < 1:
            raise ValueError(
                f"max_concurrent_rpcs_per_target must be >= 1, got {max_concurrent_rpcs_per_target}"
            )
        self._max_concurrent = max_concurrent_rpcs
        self._max_per_target = max_concurrent_rpcs_per_target
        self._owns_transport = transport is None
        self._transport = transport
        self._rng = rng if rng is not None else random.Random()
        self._notifier = Notifier([on_change] if on_change is not None else [])
        self._grace_s = shutdown_grace_s
        self._completion = completion
        self._request_locks = {}
        self._active = {}
        self._locks = {}
        self._scheduler = None
        self._driver = None
        self._leasing = None
        self._store_failure = None
        self._telemetry = telemetry
        self._writes = self.store
        self._unhook_telemetry = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between `start` and `stop`."""
        return self._scheduler is not None

    @property
    def telemetry(self) -> EngineTelemetry | None:
        """The engine's traces and metrics (None: none); the engine service reports the
        completions plugins push to it."""
        return self._telemetry

    @property
    def store_error(self) -> StoreError | None:
        """The store failure that stopped this engine's work, or None while the store works."""
        return self._store_failure

    async def start(self) -> None:
        """Opens the store, reloads unfinished tasks into the schedule, and starts polling.

        A start that fails (another engine holds the store, the store cannot be written, a
        stored task cannot be read) releases all it took: the store's connection and claim,
        and the transport the engine made. The same process can start an engine on the store
        again once it is repaired.

        After resuming 10,000 or more tasks, `start` runs one full
        garbage collection and freezes what survives (`gc.freeze()`, process-wide): later full
        collections skip those objects instead of pausing the loop to walk every task. An
        application whose own objects must stay in the cyclic collector's view (they may
        later become unreachable cycles) can call `gc.unfreeze()` after `start`.
        """
        if self._scheduler is not None:
            return
        await self.store.open()
        try:
            await self.store.claim()
            scheduler = await self._resume()
            self._scheduler = scheduler
            scheduler.start()
            if self._leasing is not None:
                self._leasing.start()
        except BaseException:
            await self._abandon_start()
            raise

    async def stop(self) -> None:
        """Stops polling (calls in flight get `shutdown_grace_s`), then closes the store.

        Stopping is safe at any point: a call cancelled in flight is simply sent again by the
        next engine started on the same store (same check number, same idempotency key).
        """
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        leasing, self._leasing = self._leasing, None
        if leasing is not None:
            await leasing.stop()
        await scheduler.stop(grace_s=self._grace_s)
        self._notifier.close()
        if self._telemetry is not None:
            self._telemetry.unbind()
        if self._unhook_telemetry is not None:
            self._unhook_telemetry()
            self._unhook_telemetry = None
        self._writes = self.store
        self._active.clear()
        self._locks.clear()
        if self._transport is not None and self._owns_transport:
            await self._transport.close()
            self._transport = None
        await self.store.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- reading tasks ---------------------------------------------------------------------

    async def resolve(self, prefix: str) -> str:
        """The id of the one task whose id is `prefix` or starts with it.

        Raises:
            TaskNotFound: no task matches. AmbiguousTaskId: several do (the message names
            them).
        """
        if prefix in self._active:
            return prefix
        return await self.store.resolve(prefix)

    async def wait(self, task_id: str, *, timeout_s: float | None = None) -> TaskRecord:
        """Waits until the task is SUCCEEDED, FAILED or CANCELLED and returns its record.

        `timeout_s` is measured on the engine's clock.

        Raises:
            TaskNotFound: no task has this id. WaitTimeout: the timeout passed first (the task
            goes on). EngineClosed: the engine is not running, or stopped while waiting.
            StoreError: the store failed, so the task cannot progress in this engine.
        """
        record = await self.get(task_id)
        if record.is_terminal:
            return record
        self._require_running()
        self._require_store()
        if self._leasing is not None:
            return await self._leasing.wait(record, timeout_s)
        self._require_owned(record)
        return await self._notifier.wait(record, self.clock, timeout_s)

    async def list(
        self,
        *,
        state: TaskState | Collection[TaskState] | None = None,
        limit: int | None = 100,
    ) -> builtins.list[TaskRecord]:
        """Tasks in the store, newest first, optionally only those in `state` (one or several)."""
        states = [state] if isinstance(state, TaskState) else state
        return await self.store.list(states=states, limit=limit)

    async def checks(self, task_id: str) -> builtins.list[CheckRecord]:
        """The task's check history, oldest first: every call, its outcome, and the schedule.

        Raises:
            TaskNotFound: no task has this id.
        """
        await self.get(task_id)
        return await self.store.checks(task_id)

    async def invoke(
        self,
        target: str,
        *,
        method: str = GENERIC_METHOD,
        payload: Payload = b"",
        options: TaskOptions | None = None,
        timeout_s: float | None = None,
    ) -> TaskRecord:
        """Submits a task and waits for its end: `submit` then `wait`."""
        task_id = await self.submit(target, method=method, payload=payload, options=options)
        return await self.wait(task_id, timeout_s=timeout_s)

    async def watch(self, task_id: str | None = None) -> AsyncIterator[TaskUpdate]:
        """Yields each recorded change: for one task (starting with its current record, ending
        when it is terminal), or for every task when `task_id` is None (until `stop`).

        Raises:
            TaskNotFound: no task has this id.
        """
        if self._leasing is not None and task_id is not None:
            async for update in self._leasing.follow(task_id):
                yield update
            return
        queue = self._notifier.subscribe(task_id)
        try:
            first = await self.get(task_id) if task_id is not None else None
            async for update in self._notifier.iterate(first, queue):
                yield update
        finally:
            self._notifier.unsubscribe(task_id, queue)

    def add_listener(self, hook: ChangeHook) -> Callable[[], None]:
        """Adds an on-change hook; returns a function that removes it."""
        return self._notifier.add_hook(hook)

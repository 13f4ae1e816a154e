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
import gc
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from importlib import metadata
from types import TracebackType
from typing import Final

from asyncplugin.protocol import TaskState

from .clock import Clock, SystemClock
from .completion import CompletionIssuer
from .control import TaskControl
from .errors import StoreError
from .leasing import Leasing
from .notify import ChangeHook, Notifier
from .policy import PollingPolicy, TransportRetryPolicy
from .records import CheckRecord, TaskRecord
from .scheduler import Scheduler
from .steps import Driver
from .store.base import SharedStore, TaskStore
from .store.memory import MemoryStore
from .submission import Payload
from .telemetry import EngineLoad, EngineTelemetry
from .transport import GrpcTransport, Transport

__all__ = ["ENGINE_NAME", "Engine", "Payload"]

_log = logging.getLogger(__name__)


def _engine_name() -> str:
    try:
        return f"asyncplugin-python/{metadata.version('asyncplugin')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "asyncplugin-python"


ENGINE_NAME = _engine_name()
"""Sent to plugins as `RequestContext.engine`."""

_FREEZE_AFTER_RESUMING: Final = 10_000
"""`start` moves the objects that survive a full collection to the collector's permanent
generation (`gc.collect(); gc.freeze()`) after resuming at least this many unfinished tasks."""


class Engine(TaskControl):
    """Drives asynchronous plugin calls to completion (asyncio API).

    The class is built in layers, one module each: `dispatch` (its state and the per-check
    path), `submission` (submitting work and following it) and `control` (cancel, complete,
    update, delete); this module adds the configuration, `start`/`stop` with the resume from
    the store, and reading the store.

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

    async def _resume(self) -> Scheduler:
        """Makes the transport (unless given), the scheduler and the driver, and schedules every
        unfinished task of the store at its recorded next check time."""
        self._store_failure = None
        if self._transport is None:
            self._transport = GrpcTransport()
        transport: Transport = self._transport
        fire: Callable[[str], Awaitable[None]] = self._fire
        telemetry = self._telemetry
        if telemetry is not None:
            transport = telemetry.wrap_transport(transport)
            fire = telemetry.wrap_handler(fire)
            self._writes = telemetry.wrap_store(self.store)
            self._unhook_telemetry = self._notifier.add_hook(telemetry.on_change)
        scheduler = Scheduler(
            self.clock,
            fire,
            max_concurrent=self._max_concurrent,
            group=self._target_of,
            max_per_group=self._max_per_target,
        )
        if telemetry is not None:
            telemetry.bind(
                lookup=self._active.get, clock=self.clock, load=lambda: self._load(scheduler)
            )
        leasing = None
        if isinstance(self.store, SharedStore):
            # Several workers share the store: lease near work instead of loading it all.
            leasing = Leasing(self, self.store, max_held=max(2 * self._max_concurrent, 64))
        self._driver = Driver(
            clock=self.clock,
            transport=transport,
            rng=self._rng,
            policy=self.policy,
            retry_policy=self.retry_policy,
            engine_name=ENGINE_NAME,
            commit=self._commit,
            schedule=leasing.held_only(scheduler.schedule) if leasing else scheduler.schedule,
            completion=self._completion,
            before_call=leasing.before_call if leasing else None,
        )
        if leasing is None:
            now = self.clock.now()
            resumed = await self.store.unfinished()
            for record in resumed:
                self._active[record.task_id] = record
                # Overdue checks (the engine was down) fire at once, in due order.
                scheduler.schedule(record.task_id, record.next_check_time or now)
            if resumed:
                _log.info("resuming %d unfinished tasks from the store", len(resumed))
            if len(resumed) >= _FREEZE_AFTER_RESUMING:
                # Every full pass of the cyclic collector would walk each resumed record and
                # stop the loop meanwhile (tens of ms per 100k tasks, a late check for every
                # task due then); take them out of its view. They are still freed by reference
                # counting when the engine replaces them.
                gc.collect()
                gc.freeze()
        self._leasing = leasing
        return scheduler

    async def _abandon_start(self) -> None:
        """Undoes a failed `start`: forgets what it loaded, closes what it opened."""
        scheduler, self._scheduler = self._scheduler, None
        leasing, self._leasing = self._leasing, None
        self._driver = None
        self._active.clear()
        try:
            if leasing is not None:
                await leasing.stop()
            if scheduler is not None:
                await scheduler.stop()
            if self._transport is not None and self._owns_transport:
                transport, self._transport = self._transport, None
                await transport.close()
        finally:
            await self.store.close()

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

    def _load(self, scheduler: Scheduler) -> EngineLoad:
        """What the engine is doing now, for metrics read at scrape time."""
        states: Counter[tuple[str, str]] = Counter()
        created: dict[str, float] = {}
        for record in self._active.values():
            plugin = record.options.plugin_id or record.target
            states[plugin, record.state.name] += 1
            created[plugin] = min(created.get(plugin, record.create_time), record.create_time)
        now = self.clock.now()
        return EngineLoad(
            states=states,
            oldest_s={plugin: max(0.0, now - when) for plugin, when in created.items()},
            calls_limit=self._max_concurrent,
            target_limit=self._max_per_target,
            targets=scheduler.group_load(),
        )

    # -- reading the store -----------------------------------------------------------------

    async def resolve(self, prefix: str) -> str:
        """The id of the one task whose id is `prefix` or starts with it.

        Raises:
            TaskNotFound: no task matches. AmbiguousTaskId: several do (the message names
            them).
        """
        if prefix in self._active:
            return prefix
        return await self.store.resolve(prefix)

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

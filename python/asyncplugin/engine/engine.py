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

import asyncio
import builtins
import contextlib
import dataclasses
import gc
import logging
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from importlib import metadata
from types import TracebackType
from typing import Any, Final

from google.protobuf import message as pb_message
from google.protobuf import struct_pb2

from asyncplugin.protocol import TaskState, encode_payload
from asyncplugin.protocol.methods import GENERIC_METHOD, check_method
from asyncplugin.v1 import error_pb2, task_pb2

from . import errors
from .clock import Clock, SystemClock
from .completion import (
    CompletionIssuer,
    completed,
    is_same_completion,
    updated,
    validate_completion,
)
from .errors import EngineClosed, LeaseLost, StoreError, TaskNotFound
from .leasing import Leasing
from .notify import ChangeHook, Notifier
from .policy import PollingPolicy, TransportRetryPolicy
from .records import CheckRecord, TaskOptions, TaskRecord, TaskUpdate, replace_task
from .scheduler import Scheduler
from .steps import Driver
from .store.base import SharedStore, TaskStore
from .store.memory import MemoryStore
from .telemetry import EngineLoad, EngineTelemetry, StoreWriter
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

Payload = bytes | pb_message.Message | Mapping[str, Any]
"""A payload: encoded bytes, a protobuf message, or a JSON-like dict (sent as a Struct)."""


class Engine:
    """Drives asynchronous plugin calls to completion (asyncio API).

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
        self.clock: Clock = clock if clock is not None else SystemClock()
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
        self._transport: Transport | None = transport
        self._rng = rng if rng is not None else random.Random()
        self._notifier = Notifier([on_change] if on_change is not None else [])
        self._grace_s = shutdown_grace_s
        self._completion = completion
        self._request_locks: dict[str, asyncio.Lock] = {}
        self._active: dict[str, TaskRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._scheduler: Scheduler | None = None
        self._driver: Driver | None = None
        self._leasing: Leasing | None = None
        self._store_failure: StoreError | None = None
        self._telemetry = telemetry
        self._writes: StoreWriter = self.store
        self._unhook_telemetry: Callable[[], None] | None = None

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

    # -- the API -----------------------------------------------------------------------------

    async def submit(
        self,
        target: str,
        *,
        method: str = GENERIC_METHOD,
        payload: Payload = b"",
        options: TaskOptions | None = None,
    ) -> str:
        """Records a new task and schedules its initiating call at once; returns its id.

        With `options.request_id` already used by a task, nothing is created and that task's id
        is returned (see `submit_detailed`).

        Args:
            target: the plugin's address, "host:port".
            method: the full method path, "/package.Service/Method" (any unary method that
                follows the envelope convention).
            payload: bytes, a protobuf message, or a JSON-like dict (sent as a Struct).
            options: per-task settings (policies, deadline, identities, metadata, labels).

        Raises:
            ValueError: the target or method is malformed. TypeError: the payload cannot be
            encoded. RequestIdConflict: the request id was used for a different task.
            EngineClosed: the engine is not running. StoreError: the store cannot record the
            task (and the engine takes no new work until it is started again).
        """
        record, _ = await self.submit_detailed(
            target, method=method, payload=payload, options=options
        )
        return record.task_id

    async def submit_detailed(
        self,
        target: str,
        *,
        method: str = GENERIC_METHOD,
        payload: Payload = b"",
        options: TaskOptions | None = None,
    ) -> tuple[TaskRecord, bool]:
        """`submit`, returning the task's record and whether it was created (False when
        `options.request_id` matched an earlier task with the same target, method and
        payload)."""
        scheduler = self._require_running()
        self._require_store()
        if not target or target != target.strip():
            raise ValueError(f"target must be 'host:port', got {target!r}")
        check_method(method)
        data = encode_payload(payload)
        options = options if options is not None else TaskOptions()
        if options.request_id:
            async with self._request_lock(options.request_id):
                found = await self.store.find_request(options.request_id)
                if found is not None:
                    return _same_request(found, target, method, data), False
                try:
                    return await self._create(scheduler, target, method, data, options), True
                except ValueError:
                    # Another engine worker on a shared store created it meanwhile.
                    found = await self.store.find_request(options.request_id)
                    if found is None:
                        raise
                    return _same_request(found, target, method, data), False
        return await self._create(scheduler, target, method, data, options), True

    async def _create(
        self, scheduler: Scheduler, target: str, method: str, data: bytes, options: TaskOptions
    ) -> TaskRecord:
        policy = options.policy or self.policy
        deadline_s = options.deadline_s if options.deadline_s is not None else policy.deadline_s
        task_id = uuid.uuid4().hex
        if self._telemetry is not None:
            options = self._telemetry.submitting(task_id, target, method, options)
        now = self.clock.now()
        record = TaskRecord(
            task_id=task_id,
            target=target,
            method=method,
            state=TaskState.WAITING,
            payload=data,
            idempotency_key=options.idempotency_key or uuid.uuid4().hex,
            options=options,
            create_time=now,
            update_time=now,
            next_check_time=now,
            deadline=now + deadline_s if deadline_s is not None else None,
            revision=1,
        )
        with self.clock.busy():
            try:
                await self._writes.create(record)
            except StoreError as err:
                self._store_failed(err)
                raise
        if self._leasing is None:
            self._active[task_id] = record
            scheduler.schedule(task_id, now)
        # else: a worker (this one, most often) leases it once the store's hint wakes it.
        self._notifier.publish(TaskUpdate(record=record))
        return record

    @contextlib.asynccontextmanager
    async def _request_lock(self, request_id: str) -> AsyncIterator[None]:
        """Serializes submits of one request id, so a retried submit creates one task."""
        lock = self._request_locks.setdefault(request_id, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked():
                self._request_locks.pop(request_id, None)

    async def resolve(self, prefix: str) -> str:
        """The id of the one task whose id is `prefix` or starts with it.

        Raises:
            TaskNotFound: no task matches. AmbiguousTaskId: several do (the message names
            them).
        """
        if prefix in self._active:
            return prefix
        return await self.store.resolve(prefix)

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

    async def cancel(self, task_id: str) -> TaskRecord:
        """Cancels the task: records it CANCELLED, then tells the plugin.

        The plugin gets one best-effort status check with `cancel_requested = true` (if it has
        answered RUNNING; otherwise there is no remote work to name) and its answer goes into
        the check history; the task stays CANCELLED whatever it answers. A call in flight for
        the task is allowed to finish first (at most the policy's `check_timeout_s`): if it
        finished the task, that result stands and cancel changes nothing. Cancelling a finished
        task returns its record unchanged.

        Raises:
            TaskNotFound: no task has this id. EngineClosed: the engine is not running.
            StoreError: the store failed (nothing is sent to the plugin).
        """
        record = await self.get(task_id)
        if record.is_terminal:
            return record
        scheduler = self._require_running()
        self._require_store()
        if self._leasing is not None and task_id not in self._active:
            return await self._leasing.cancel(task_id)  # another worker holds it
        self._require_owned(record)
        async with self._locked(task_id):
            with self.clock.busy():
                current = self._active.get(task_id)
                if current is None:
                    return await self.get(task_id)
                assert self._driver is not None
                try:
                    with self._pinned(task_id):
                        scheduler.unschedule(task_id)
                        await self._driver.cancel(current)
                        return await self.get(task_id)
                except LeaseLost:
                    if self._leasing is None:
                        raise
                    self._leasing.lost(task_id)
        # This worker's lease ended meanwhile: ask the task's new holder instead.
        return await self.cancel(task_id)

    async def complete(
        self,
        task_id: str,
        *,
        data: bytes | None = None,
        error: error_pb2.Error | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Finishes the task with `data` (SUCCEEDED) or `error` (FAILED), as its plugin asked.

        Holds the task's lock: a call in flight for the task finishes (and is recorded) first,
        so exactly one end is recorded. The pending status check is dropped. Returns the record
        and whether this exact completion had already been recorded (a retried call: nothing
        new is recorded).

        Raises:
            ValueError: neither or both of data and error. ProtocolViolation: the error
            envelope breaks a rule. TaskNotFound: no such task. TaskStateError: the task
            already ended differently (the message names its state). EngineClosed,
            StoreError: as for `submit`.
        """
        validate_completion(data, error)
        record = await self.get(task_id)
        if record.is_terminal:
            return self._ended(record, data, error), True
        scheduler = self._require_running()
        self._require_store()
        if not await self._hold(task_id):
            return self._ended(await self.get(task_id), data, error), True  # it ended meanwhile
        self._require_owned(record)
        async with self._locked(task_id):
            with self.clock.busy(), self._pinned(task_id):
                current = self._active.get(task_id)
                if current is None:
                    return self._ended(await self.get(task_id), data, error), True
                scheduler.unschedule(task_id)
                done, entry = completed(current, data, error, self.clock.now())
                await self._commit(done, entry)
                return await self.get(task_id), False

    async def _hold(self, task_id: str) -> bool:
        """On a shared store, makes this worker the task's holder before it records what the
        plugin reported (the previous holder's writes are fenced off from then on); False if
        the task has ended meanwhile. True at once on a private store."""
        if self._leasing is None or task_id in self._active:
            return True
        return await self._leasing.take_over(task_id)

    def _ended(
        self, record: TaskRecord, data: bytes | None, error: error_pb2.Error | None
    ) -> TaskRecord:
        if is_same_completion(record, data, error):
            return record
        raise errors.TaskStateError(
            task_id=record.task_id,
            state_name=record.state.name,
            detail="it already ended and a different completion cannot change it",
        )

    async def update(
        self,
        task_id: str,
        *,
        progress: task_pb2.Progress | None = None,
        status_message: str = "",
        remote_status_input: struct_pb2.Struct | None = None,
        check_after_s: float | None = None,
    ) -> TaskRecord:
        """Records the plugin's progress report for a RUNNING task (see `completion.updated`).

        `remote_status_input` replaces the one sent on the next status check; `check_after_s`
        moves that check (clamped to the task's policy). Holds the task's lock like `complete`.

        Raises:
            TaskNotFound: no such task. TaskStateError: the task is not RUNNING.
            ProtocolViolation: the report breaks a rule of task.proto. EngineClosed,
            StoreError: as for `submit`.
        """
        record = await self.get(task_id)
        if record.is_terminal:
            raise errors.TaskStateError(
                record.task_id, record.state.name, "only a RUNNING task can be updated"
            )
        scheduler = self._require_running()
        self._require_store()
        if not await self._hold(task_id):
            current = await self.get(task_id)
            raise errors.TaskStateError(
                task_id, current.state.name, "only a RUNNING task can be updated"
            )
        self._require_owned(record)
        async with self._locked(task_id):
            with self.clock.busy(), self._pinned(task_id):
                current = self._active.get(task_id) or await self.get(task_id)
                assert self._driver is not None
                changed, entry = updated(
                    current,
                    self._driver.policy_for(current),
                    self.clock.now(),
                    progress=progress,
                    status_message=status_message,
                    remote_status_input=remote_status_input,
                    check_after_s=check_after_s,
                )
                await self._commit(changed, entry)
                if entry.interval_s is not None and changed.next_check_time is not None:
                    scheduler.schedule(task_id, changed.next_check_time)
                return changed

    async def delete(self, task_id: str) -> None:
        """Removes a finished task and its history from the store.

        Raises:
            TaskNotFound: no such task. TaskStateError: the task has not finished.
        """
        record = await self.get(task_id)
        if not record.is_terminal:
            raise errors.TaskStateError(
                record.task_id, record.state.name, "only a finished task can be deleted"
            )
        async with self._locked(task_id):
            with self.clock.busy():
                try:
                    await self.store.delete(task_id)
                except StoreError as err:
                    self._store_failed(err)
                    raise

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

    # -- internals -----------------------------------------------------------------------------

    def _require_running(self) -> Scheduler:
        if self._scheduler is None:
            raise EngineClosed("the engine is not running: use 'async with Engine(...)'")
        return self._scheduler

    def _require_store(self) -> None:
        if self._store_failure is not None:
            raise StoreError(
                f"the engine takes no new work since its store failed: {self._store_failure}"
            ) from self._store_failure

    def _store_failed(self, err: StoreError) -> None:
        """Stops the engine's work after a failed store write, waking every waiter with it."""
        if self._store_failure is not None:
            return
        self._store_failure = err
        _log.error("the task store failed; the engine stops sending calls: %s", err)
        self._notifier.close(err)

    def _require_owned(self, record: TaskRecord) -> None:
        """Unfinished tasks are loaded at start; one that is not was added by another engine."""
        if record.task_id not in self._active:
            raise errors.EngineError(
                f"task {record.task_id} is {record.state.name} in the store but not run by this "
                "engine (is another engine process using the same store?)"
            )

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


def _same_request(found: TaskRecord, target: str, method: str, payload: bytes) -> TaskRecord:
    """The task a request id names, if the repeated submit asks for the same work."""
    differing = [
        name
        for name, same in (
            ("target", found.target == target),
            ("method", found.method == method),
            ("payload", found.payload == payload),
        )
        if not same
    ]
    if differing:
        raise errors.RequestIdConflict(found.options.request_id, found.task_id, differing)
    return found

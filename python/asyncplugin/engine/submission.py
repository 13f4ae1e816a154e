"""Submitting work and following it to its end: submit, invoke, wait, watch.

`Submission` is one layer of the `Engine` (see `engine.py`): a new task is recorded and
scheduled at once; a repeated request id is answered with the task it made. It also holds the
checks every API call makes first (running, store healthy, task run by this engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from google.protobuf import message as pb_message

from asyncplugin.protocol import TaskState, encode_payload
from asyncplugin.protocol.methods import GENERIC_METHOD, check_method

from . import errors
from .dispatch import Dispatch
from .errors import EngineClosed, StoreError
from .notify import ChangeHook
from .records import TaskOptions, TaskRecord, TaskUpdate
from .scheduler import Scheduler

__all__ = ["Payload", "Submission"]

Payload = bytes | pb_message.Message | Mapping[str, Any]
"""A payload: encoded bytes, a protobuf message, or a JSON-like dict (sent as a Struct)."""


class Submission(Dispatch):
    """Submitting work (`submit`, `invoke`) and following it (`wait`, `watch`, listeners),
    and the guards of the engine's API."""

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

    def _require_running(self) -> Scheduler:
        if self._scheduler is None:
            raise EngineClosed("the engine is not running: use 'async with Engine(...)'")
        return self._scheduler

    def _require_store(self) -> None:
        if self._store_failure is not None:
            raise StoreError(
                f"the engine takes no new work since its store failed: {self._store_failure}"
            ) from self._store_failure

    def _require_owned(self, record: TaskRecord) -> None:
        """Unfinished tasks are loaded at start; one that is not was added by another engine."""
        if record.task_id not in self._active:
            raise errors.EngineError(
                f"task {record.task_id} is {record.state.name} in the store but not run by this "
                "engine (is another engine process using the same store?)"
            )


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

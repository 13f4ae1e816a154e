"""Acting on a task that runs: cancel it, or record what its plugin reports (complete, update).

`TaskControl` is one layer of the `Engine` (see `engine.py`); `delete` removes a finished task.
"""

from __future__ import annotations

from google.protobuf import struct_pb2

from asyncplugin.v1 import error_pb2, task_pb2

from . import errors
from .completion import completed, is_same_completion, updated, validate_completion
from .errors import LeaseLost, StoreError
from .records import TaskRecord
from .submission import Submission

__all__ = ["TaskControl"]


class TaskControl(Submission):
    """`cancel`, `complete`, `update` and `delete`: each holds the task's lock."""

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

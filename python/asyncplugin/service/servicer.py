"""EngineService over one running Engine: each RPC checks its input, then asks the engine.

The task rules (submission, cancellation, completion, progress reports) live in the engine;
this layer only translates: requests are checked (`requests.py`) before anything is recorded,
records become messages (`convert.py`), and errors become gRPC statuses (`errors.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any, cast

import grpc
from grpc import aio

from asyncplugin.engine import (
    Engine,
    TaskCursor,
    TaskNotFound,
    TaskOptions,
    TaskRecord,
    TaskUpdate,
)
from asyncplugin.engine.telemetry import CompletionMethod
from asyncplugin.engine.v1 import engine_pb2, engine_pb2_grpc
from asyncplugin.observability import TASK_ID, parent_from_traceparent
from asyncplugin.observability.tracecontext import MAX_HEADER_CHARS, traceparent_in

from .convert import check_to_proto, policy_from_proto, seconds, task_to_proto, timestamp
from .errors import BadRequest, refusing, refusing_stream
from .requests import (
    Limits,
    check_labels,
    check_method,
    check_page_size,
    check_payload,
    check_target,
    check_text,
    check_type_name,
    list_filter,
    page_token,
    read_page_token,
)
from .tokens import CompletionTokens, TokenRejected

__all__ = ["EngineServicer"]

_log = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]


class EngineServicer(engine_pb2_grpc.EngineServiceServicer):
    """The EngineService RPCs.

    Args:
        engine: the running engine (owned by the caller).
        tokens: completion tokens (None: CompleteTask and UpdateTask are refused).
        limits: size limits of submitted tasks.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        tokens: CompletionTokens | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._engine = engine
        self._tokens = tokens
        self._limits = limits if limits is not None else Limits()
        self._closing = asyncio.Event()

    def close(self) -> None:
        """Ends every open WatchTask stream with UNAVAILABLE (clients reconnect elsewhere)."""
        self._closing.set()

    def _task(
        self,
        record: TaskRecord,
        checks: Any = None,
        view: engine_pb2.TaskView.ValueType = engine_pb2.TASK_VIEW_BASIC,
    ) -> engine_pb2.Task:
        return task_to_proto(record, checks, view=view, default_policy=self._engine.policy)

    @refusing
    async def SubmitTask(
        self, request: engine_pb2.SubmitTaskRequest, context: Context
    ) -> engine_pb2.SubmitTaskResponse:
        """See engine.proto."""
        target = check_target(request.target)
        method = check_method(request.method)
        payload = check_payload(request.payload, self._limits)
        labels = check_labels(request.labels)
        traceparent, tracestate = _trace_context(context)
        # The task keeps the policy it was submitted under (the daemon's, with the request's
        # overrides), so a reader of the store file shows the same policy as the daemon.
        try:
            policy, deadline_s = policy_from_proto(request.policy, self._engine.policy)
        except ValueError as err:
            raise BadRequest("policy", str(err)) from None
        options = TaskOptions(
            policy=policy,
            deadline_s=deadline_s,
            labels=labels,
            request_id=check_text(
                "request_id", request.request_id, max_chars=128, printable_ascii=True
            ),
            plugin_id=check_text("plugin_id", request.plugin_id, max_chars=256),
            plugin_instance_id=check_text(
                "plugin_instance_id", request.plugin_instance_id, max_chars=256
            ),
            result_type=check_type_name(request.result_type),
            traceparent=traceparent,
            tracestate=tracestate,
        )
        record, created = await self._engine.submit_detailed(
            target, method=method, payload=payload, options=options
        )
        if created:
            with _task_logs(record.task_id):
                _log.info("task %s submitted: %s at %s", record.task_id, method, target)
        return engine_pb2.SubmitTaskResponse(task=self._task(record), created=created)

    @refusing
    async def GetTask(
        self, request: engine_pb2.GetTaskRequest, context: Context
    ) -> engine_pb2.GetTaskResponse:
        """See engine.proto."""
        task_id = await self._engine.resolve(request.task_id)
        record = await self._engine.get(task_id)
        view = request.view or engine_pb2.TASK_VIEW_FULL
        checks = await self._engine.checks(task_id) if view == engine_pb2.TASK_VIEW_FULL else None
        return engine_pb2.GetTaskResponse(task=self._task(record, checks, view))

    @refusing
    async def ListTasks(
        self, request: engine_pb2.ListTasksRequest, context: Context
    ) -> engine_pb2.ListTasksResponse:
        """See engine.proto."""
        size = check_page_size(request.page_size)
        where = list_filter(request)
        cursor = read_page_token(request.page_token, where)
        records = await self._engine.store.query(where, limit=size + 1, after=cursor)
        view = request.view or engine_pb2.TASK_VIEW_BASIC
        response = engine_pb2.ListTasksResponse()
        for record in records[:size]:
            checks = (
                await self._engine.checks(record.task_id)
                if view == engine_pb2.TASK_VIEW_FULL
                else None
            )
            response.tasks.append(self._task(record, checks, view))
        if len(records) > size:
            response.next_page_token = page_token(TaskCursor.of(records[size - 1]), where)
        return response

    @refusing_stream
    async def WatchTask(
        self, request: engine_pb2.WatchTaskRequest, context: Context
    ) -> AsyncIterator[engine_pb2.WatchTaskResponse]:
        """See engine.proto."""
        if request.after_revision < 0:
            raise BadRequest("after_revision", "must not be negative")
        task_id = await self._engine.resolve(request.task_id)
        view = request.view or engine_pb2.TASK_VIEW_BASIC
        sent = request.after_revision
        updates = cast(AsyncGenerator[TaskUpdate, None], self._engine.watch(task_id))
        closing = asyncio.ensure_future(self._closing.wait())
        step: asyncio.Future[TaskUpdate] | None = None
        try:
            first = True
            while True:
                step = asyncio.ensure_future(anext(updates))
                await asyncio.wait((step, closing), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    break
                try:
                    update: TaskUpdate = step.result()
                except StopAsyncIteration:
                    break
                record = update.record
                if first:
                    first = False
                    if record.revision <= sent and not record.is_terminal:
                        continue  # the client has seen this change (a reconnect): wait for more
                    history = await self._engine.store.checks_after(task_id, sent)
                    entries = [c for c in history if c.revision <= record.revision]
                elif record.revision <= sent:
                    continue  # already covered by the first message
                else:
                    entries = list(update.checks)
                yield self._change(record, entries, view)
                sent = record.revision
                if record.is_terminal:
                    return
        finally:
            closing.cancel()
            if step is not None:
                # The pending step runs the generator: it must end before the generator can be
                # closed (a client that leaves mid-watch lands here, cancelled).
                await _settle(step)
            await updates.aclose()
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"the engine is shutting down; reconnect and resume with after_revision={sent}",
        )

    def _change(
        self, record: TaskRecord, entries: Any, view: engine_pb2.TaskView.ValueType
    ) -> engine_pb2.WatchTaskResponse:
        task = self._task(record, None, view)
        return engine_pb2.WatchTaskResponse(
            task=task, checks=[check_to_proto(entry) for entry in entries]
        )

    @refusing
    async def CancelTask(
        self, request: engine_pb2.CancelTaskRequest, context: Context
    ) -> engine_pb2.CancelTaskResponse:
        """See engine.proto."""
        task_id = await self._engine.resolve(request.task_id)
        with _task_logs(task_id):
            record = await self._engine.cancel(task_id)
            _log.info("task %s: cancel asked by a client; it is %s", task_id, record.state.name)
        return engine_pb2.CancelTaskResponse(task=self._task(record))

    def _token_task(self, token: str, method: CompletionMethod) -> str:
        """The task the completion token is bound to; a refused token is counted as a refused
        completion (with no span: a forged token names no task that can be trusted)."""
        try:
            if self._tokens is None:
                raise TokenRejected("this engine was started without completion keys")
            return self._tokens.verify(token, now=self._engine.clock.now())
        except TokenRejected as rejected:
            self._observe(None, method, accepted=False, reason=rejected.reason)
            raise

    def _observe(
        self,
        record: TaskRecord | None,
        method: CompletionMethod,
        *,
        accepted: bool,
        reason: str = "",
    ) -> None:
        telemetry = self._engine.telemetry
        if telemetry is not None:
            telemetry.completion(record, accepted=accepted, reason=reason, method=method)

    async def _refused(self, task_id: str, method: CompletionMethod, err: Exception) -> None:
        """Counts a refused completion of a known task, with a span in the task's trace."""
        try:
            record: TaskRecord | None = await self._engine.get(task_id)
        except TaskNotFound:
            record = None
        self._observe(record, method, accepted=False, reason=str(err))

    @refusing
    async def CompleteTask(
        self, request: engine_pb2.CompleteTaskRequest, context: Context
    ) -> engine_pb2.CompleteTaskResponse:
        """See engine.proto."""
        task_id = self._token_task(request.completion_token, "CompleteTask")
        with _task_logs(task_id):
            try:
                outcome = request.WhichOneof("outcome")
                if outcome is None:
                    raise BadRequest("outcome", "give data (SUCCEEDED) or error (FAILED)")
                data = check_payload(request.data, self._limits) if outcome == "data" else None
                error = request.error if outcome == "error" else None
                record, repeated = await self._engine.complete(task_id, data=data, error=error)
            except Exception as err:
                await self._refused(task_id, "CompleteTask", err)
                raise
            self._observe(
                record,
                "CompleteTask",
                accepted=True,
                reason="already recorded" if repeated else "",
            )
            _log.info(
                "task %s %s by its plugin%s",
                task_id,
                record.state.name,
                " (repeated completion)" if repeated else "",
            )
        return engine_pb2.CompleteTaskResponse(
            task_id=task_id,
            state=int(record.state),  # type: ignore[arg-type]
            already_recorded=repeated,
        )

    @refusing
    async def UpdateTask(
        self, request: engine_pb2.UpdateTaskRequest, context: Context
    ) -> engine_pb2.UpdateTaskResponse:
        """See engine.proto."""
        task_id = self._token_task(request.completion_token, "UpdateTask")
        with _task_logs(task_id):
            try:
                record = await self._engine.update(
                    task_id,
                    progress=request.progress if request.HasField("progress") else None,
                    status_message=request.status_message,
                    remote_status_input=request.remote_status_input
                    if request.HasField("remote_status_input")
                    else None,
                    check_after_s=seconds(request.check_after)
                    if request.HasField("check_after")
                    else None,
                )
            except Exception as err:
                await self._refused(task_id, "UpdateTask", err)
                raise
            self._observe(record, "UpdateTask", accepted=True)
        response = engine_pb2.UpdateTaskResponse(task_id=task_id)
        if record.next_check_time is not None:
            response.next_check_time.CopyFrom(timestamp(record.next_check_time))
        return response


async def _settle(step: asyncio.Future[TaskUpdate]) -> None:
    """Cancels a pending watch step and waits for it to end, retrieving its outcome."""
    if not step.done():
        step.cancel()
        await asyncio.wait((step,))
    if not step.cancelled():
        step.exception()  # retrieved: StopAsyncIteration at the end is not an error


@contextlib.contextmanager
def _task_logs(task_id: str) -> Iterator[None]:
    """Log lines written inside name the task (`task_id` in JSON logs)."""
    token = TASK_ID.set(task_id)
    try:
        yield
    finally:
        TASK_ID.reset(token)


def _trace_context(context: Context) -> tuple[str, str]:
    """The caller's W3C trace context, if it sent a valid one: the task's trace continues the
    submitter's. A malformed or oversized one is ignored (the task starts a new trace)."""
    traceparent, tracestate = traceparent_in(context.invocation_metadata() or ())
    if parent_from_traceparent(traceparent, tracestate) is None:
        return "", ""
    return traceparent, tracestate if len(tracestate) <= MAX_HEADER_CHARS else ""

"""EngineClient: the asyncio client of the engine daemon's EngineService (and its blocking facade).

    async with EngineClient("127.0.0.1:7000", token=token) as client:
        task = await client.submit("127.0.0.1:50051", payload={"duration_s": 3})
        async for change in client.watch(task.task_id):
            print(change.task.state, [entry.message for entry in change.checks])
        done = await client.get(task.task_id)          # TASK_VIEW_FULL: result and history

    with SyncEngineClient("127.0.0.1:7000") as client:
        print(client.wait(client.submit("127.0.0.1:50051").task_id).state)

Every method returns the service's messages (`asyncplugin.engine.v1.engine_pb2`); a failed call
raises `EngineServiceError` carrying the gRPC code and the server's one-line message (which
names the field or the candidate task ids). Task ids may be any unique prefix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final

import grpc
from google.protobuf import message as pb_message
from grpc import aio

from asyncplugin.engine.credentials import ChannelSecurity
from asyncplugin.engine.v1 import engine_pb2, engine_pb2_grpc
from asyncplugin.protocol import AsyncPluginError, PluginError, TaskState, encode_payload
from asyncplugin.protocol.security import is_loopback_target
from asyncplugin.protocol.structs import dict_to_struct
from asyncplugin.v1 import error_pb2, task_pb2

from .convert import duration, timestamp
from .sync_client import SyncEngineClient

__all__ = ["EngineClient", "EngineServiceError", "SyncEngineClient"]

_TERMINAL = frozenset(
    (task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_FAILED, task_pb2.TASK_STATE_CANCELLED)
)
_RECONNECT_CODES = frozenset((grpc.StatusCode.UNAVAILABLE,))
# A restarted daemon is found again within about a second (gRPC's default reconnect backoff
# grows to 120 s, which would leave a watcher idle long after the daemon is back).
_CHANNEL_OPTIONS: Final = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

Payload = bytes | pb_message.Message | Mapping[str, Any]
"""A payload: encoded bytes, a protobuf message, or a JSON-like dict (sent as a Struct)."""


class EngineServiceError(AsyncPluginError):
    """An EngineService call failed; `code` is its gRPC status code, the message the server's."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.detail = message


def is_terminal(state: int) -> bool:
    """True for SUCCEEDED, FAILED and CANCELLED."""
    return state in _TERMINAL


def _raise(err: grpc.aio.AioRpcError) -> EngineServiceError:
    return EngineServiceError(err.code(), err.details() or "")


def _epoch(value: float | datetime | None) -> Any:
    if value is None:
        return None
    return timestamp(value.timestamp() if isinstance(value, datetime) else value)


class EngineClient:
    """An asyncio client of one engine daemon.

    Args:
        address: the daemon's "host:port".
        security: TLS for the channel (mutual TLS with a client certificate); None: plaintext,
            allowed only to a loopback address unless `allow_insecure`.
        token: the bearer token sent on every call (the daemon's --token-file).
        allow_insecure: allow plaintext to a non-loopback address.
        timeout_s: the timeout of each unary call.
        wait_for_ready: let unary calls wait (up to `timeout_s`) for an unreachable daemon to
            come back instead of failing UNAVAILABLE at once.
        channel: an existing grpc.aio channel to use instead (the client does not close it).

    Raises:
        ValueError: plaintext to a non-loopback address without `allow_insecure`.
    """

    def __init__(
        self,
        address: str,
        *,
        security: ChannelSecurity | None = None,
        token: str | None = None,
        allow_insecure: bool = False,
        timeout_s: float = 30.0,
        wait_for_ready: bool = False,
        channel: aio.Channel | None = None,
    ) -> None:
        plaintext = channel is None and security is None and not allow_insecure
        if plaintext and not is_loopback_target(address):
            raise ValueError(
                f"refusing to call the engine at {address} without TLS: it is not a "
                "loopback address; give TLS settings, or allow_insecure=True"
            )
        self.address = address
        self._security = security
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._timeout_s = timeout_s
        self._wait_for_ready = wait_for_ready
        self._owns_channel = channel is None
        self._channel = channel
        self._stub: engine_pb2_grpc.EngineServiceStub | None = None

    def __repr__(self) -> str:
        return f"EngineClient({self.address!r}, token={'<redacted>' if self._metadata else None})"

    @property
    def stub(self) -> engine_pb2_grpc.EngineServiceStub:
        """The generated stub (the channel is created on first use, in the running loop)."""
        if self._stub is None:
            if self._channel is None:
                options: list[tuple[str, Any]] = [*_CHANNEL_OPTIONS]
                if self._security is not None:
                    options.extend(self._security.channel_options())
                self._channel = (
                    aio.secure_channel(
                        self.address, self._security.channel_credentials(), options=options
                    )
                    if self._security is not None
                    else aio.insecure_channel(self.address, options=options)
                )
            self._stub = engine_pb2_grpc.EngineServiceStub(self._channel)
        return self._stub

    @property
    def channel(self) -> aio.Channel:
        """The channel (created on first use)."""
        _ = self.stub
        assert self._channel is not None
        return self._channel

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata sent with every call (the bearer token, if any)."""
        return self._metadata

    async def close(self) -> None:
        """Closes the channel (if the client created it)."""
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None and self._owns_channel:
            await channel.close()

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _unary(self, method: Callable[..., Any], request: pb_message.Message) -> Any:
        try:
            return await method(
                request,
                metadata=self._metadata,
                timeout=self._timeout_s,
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.aio.AioRpcError as err:
            raise _raise(err) from None

    # -- tasks -------------------------------------------------------------------------------

    async def submit(
        self,
        target: str,
        *,
        method: str = "",
        payload: Payload = b"",
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
        policy: engine_pb2.PollingPolicy | None = None,
        plugin_id: str = "",
        plugin_instance_id: str = "",
        result_type: str = "",
    ) -> engine_pb2.Task:
        """Submits a task; returns it (TASK_VIEW_BASIC). See `submit_request` for `created`.

        `policy` holds overrides only (build it with `convert.policy_overrides(...)`, the
        deadline included); `method` "" is "/asyncplugin.v1.PluginService/Invoke".
        """
        response = await self.submit_request(
            engine_pb2.SubmitTaskRequest(
                target=target,
                method=method,
                payload=encode_payload(payload),
                labels=dict(labels or {}),
                request_id=request_id,
                policy=policy,
                plugin_id=plugin_id,
                plugin_instance_id=plugin_instance_id,
                result_type=result_type,
            )
        )
        task: engine_pb2.Task = response.task
        return task

    async def submit_request(
        self, request: engine_pb2.SubmitTaskRequest
    ) -> engine_pb2.SubmitTaskResponse:
        """Sends a SubmitTaskRequest as it is; the response says whether a task was created."""
        response: engine_pb2.SubmitTaskResponse = await self._unary(self.stub.SubmitTask, request)
        return response

    async def get(
        self, task_id: str, *, view: engine_pb2.TaskView.ValueType = engine_pb2.TASK_VIEW_FULL
    ) -> engine_pb2.Task:
        """One task by id or unique prefix (default: with payload, result and history)."""
        response = await self._unary(
            self.stub.GetTask, engine_pb2.GetTaskRequest(task_id=task_id, view=view)
        )
        task: engine_pb2.Task = response.task
        return task

    async def list(
        self,
        *,
        states: Sequence[TaskState | int] = (),
        target: str = "",
        labels: Mapping[str, str] | None = None,
        created_after: float | datetime | None = None,
        created_before: float | datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        view: engine_pb2.TaskView.ValueType = engine_pb2.TASK_VIEW_BASIC,
    ) -> engine_pb2.ListTasksResponse:
        """One page of tasks, newest first; `next_page_token` is "" on the last page.

        Times are epoch seconds or aware datetimes; `page_size` 0 is the server's default.
        """
        request = engine_pb2.ListTasksRequest(
            states=[int(state) for state in states],  # type: ignore[misc]
            target=target,
            labels=dict(labels or {}),
            created_after=_epoch(created_after),
            created_before=_epoch(created_before),
            page_size=page_size,
            page_token=page_token,
            view=view,
        )
        response: engine_pb2.ListTasksResponse = await self._unary(self.stub.ListTasks, request)
        return response

    async def list_all(
        self, *, limit: int | None = None, **filters: Any
    ) -> AsyncIterator[engine_pb2.Task]:
        """Every task passing the filters (`list`'s keyword arguments), page after page, up to
        `limit` tasks."""
        token, seen = "", 0
        while True:
            page = await self.list(page_token=token, **filters)
            for task in page.tasks:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield task
            token = page.next_page_token
            if not token:
                return

    async def cancel(self, task_id: str) -> engine_pb2.Task:
        """Cancels a task (by id or unique prefix); returns it after the cancellation."""
        response = await self._unary(
            self.stub.CancelTask, engine_pb2.CancelTaskRequest(task_id=task_id)
        )
        task: engine_pb2.Task = response.task
        return task

    async def watch(
        self,
        task_id: str,
        *,
        after_revision: int = 0,
        view: engine_pb2.TaskView.ValueType = engine_pb2.TASK_VIEW_BASIC,
        reconnect_timeout_s: float | None = 60.0,
    ) -> AsyncIterator[engine_pb2.WatchTaskResponse]:
        """Yields each recorded change of the task until it ends (see WatchTask).

        When the daemon goes away (UNAVAILABLE: restarted, shut down, network), the watch
        reconnects from the last revision seen, so no history entry is missed, for up to
        `reconnect_timeout_s` seconds of trying (None: forever; 0: never).
        """
        revision, name = after_revision, task_id
        backoff_s, given_up_at = 0.1, None
        while True:
            request = engine_pb2.WatchTaskRequest(task_id=name, after_revision=revision, view=view)
            try:
                call: Any = self.stub.WatchTask(request, metadata=self._metadata)
                async for change in call:
                    given_up_at, backoff_s = None, 0.1
                    revision, name = change.task.revision, change.task.task_id
                    yield change
                    if is_terminal(change.task.state):
                        return
            except grpc.aio.AioRpcError as err:
                if err.code() not in _RECONNECT_CODES or reconnect_timeout_s == 0:
                    raise _raise(err) from None
                now = time.monotonic()
                if given_up_at is None and reconnect_timeout_s is not None:
                    given_up_at = now + reconnect_timeout_s
                if given_up_at is not None and now >= given_up_at:
                    raise _raise(err) from None
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 2.0)

    async def wait(
        self, task_id: str, *, reconnect_timeout_s: float | None = 60.0
    ) -> engine_pb2.Task:
        """Follows the task until it ends; returns it in TASK_VIEW_FULL."""
        name = task_id
        async for change in self.watch(task_id, reconnect_timeout_s=reconnect_timeout_s):
            name = change.task.task_id
        return await self.get(name)

    # -- push completion -----------------------------------------------------------------------

    async def complete(
        self,
        completion_token: str,
        *,
        data: Payload | None = None,
        error: PluginError | error_pb2.Error | None = None,
    ) -> engine_pb2.CompleteTaskResponse:
        """Finishes the task the token is bound to: with `data` (SUCCEEDED) or `error` (FAILED).

        Plugins use `asyncplugin.plugin.completion.CompletionClient`, which needs no engine
        code; this is the same call for code that already holds an EngineClient.
        """
        request = engine_pb2.CompleteTaskRequest(completion_token=completion_token)
        if (data is None) == (error is None):
            raise ValueError("give exactly one of data and error")
        if data is not None:
            request.data = encode_payload(data)
        else:
            assert error is not None
            request.error.CopyFrom(error.to_proto() if isinstance(error, PluginError) else error)
        response: engine_pb2.CompleteTaskResponse = await self._unary(
            self.stub.CompleteTask, request
        )
        return response

    async def update(
        self,
        completion_token: str,
        *,
        progress: task_pb2.Progress | None = None,
        status_message: str = "",
        remote_status_input: Mapping[str, Any] | None = None,
        check_after_s: float | None = None,
    ) -> engine_pb2.UpdateTaskResponse:
        """Reports progress of the task the token is bound to (see UpdateTask)."""
        request = engine_pb2.UpdateTaskRequest(
            completion_token=completion_token, status_message=status_message
        )
        if progress is not None:
            request.progress.CopyFrom(progress)
        if remote_status_input is not None:
            request.remote_status_input.CopyFrom(dict_to_struct(remote_status_input))
        if check_after_s is not None:
            request.check_after.CopyFrom(duration(check_after_s))
        response: engine_pb2.UpdateTaskResponse = await self._unary(self.stub.UpdateTask, request)
        return response

"""Push completion for plugin authors: finish a task at once, or report its progress.

When the engine offers it, every call a plugin gets carries `request.context.engine_address`
and `request.context.completion_token`. Keep both with the remote job (for example in the
webhook URL the remote system calls back); when the remote work ends, call `complete`, and the
task is recorded at once instead of at the engine's next status check:

    completions = CompletionClient()

    async def initiate_work(self, request):
        job = await api.start(..., webhook=make_url(request.context.engine_address,
                                                     request.context.completion_token))
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"job": job}))

    async def on_webhook(address, token, job):           # later, outside the plugin's handlers
        if job.failed:
            await completions.complete(address, token, error=PluginError(message="..."))
        else:
            await completions.complete(address, token, data=Transcript(text=job.text))

Status checks go on as the safety net, and the engine records exactly one end: a completion
that arrives while a status check is in flight waits for that check's outcome. So call it from
outside the plugin's own handlers; called inside one, it waits until that call has ended.
Repeating a completion is safe (`already_recorded`); a different one after the end is refused
with the task's state. The token is a secret: never log it.

This module uses only the generated EngineService stubs and `asyncplugin.protocol`; the plugin
SDK never imports the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import grpc
from grpc import aio

from asyncplugin.engine.v1 import engine_pb2, engine_pb2_grpc
from asyncplugin.protocol import (
    AsyncPluginError,
    PluginError,
    Progress,
    RequestContext,
    dict_to_struct,
    encode_payload,
)

__all__ = ["CompletionClient", "CompletionRefused"]


class CompletionRefused(AsyncPluginError):
    """The engine refused a completion or update; `code` says why.

    PERMISSION_DENIED: the token is forged, expired, or for another engine. FAILED_PRECONDITION:
    the task already ended differently (or, for an update, is not RUNNING); the message names
    its state. INVALID_ARGUMENT: the error envelope or progress breaks a rule (named).
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code


class CompletionClient:
    """Calls CompleteTask and UpdateTask on the engines that sent the plugin its tasks.

    Args:
        credentials: channel credentials for TLS to the engine (None: plaintext, allowed only
            to loopback addresses unless `allow_insecure`).
        allow_insecure: allow plaintext to a non-loopback engine address.
        timeout_s: the timeout of each call.
    """

    def __init__(
        self,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        allow_insecure: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        self._credentials = credentials
        self._allow_insecure = allow_insecure
        self._timeout_s = timeout_s
        self._channels: dict[str, aio.Channel] = {}

    async def complete(
        self,
        address: str,
        token: str,
        *,
        data: Any = None,
        error: PluginError | None = None,
    ) -> bool:
        """Finishes the task: with `data` (the method's output message, bytes, or a dict for a
        Struct payload) it is SUCCEEDED, with `error` FAILED. Returns True when this exact
        completion had already been recorded.

        Raises:
            ValueError: neither or both of data and error, or a missing address or token.
            CompletionRefused: the engine refused it (see the class).
        """
        if (data is None) == (error is None):
            raise ValueError("give exactly one of data and error")
        request = engine_pb2.CompleteTaskRequest(completion_token=self._token(token))
        if error is not None:
            request.error.CopyFrom(error.to_proto())
        else:
            request.data = encode_payload(data)
        response: engine_pb2.CompleteTaskResponse = await self._call(
            address, "CompleteTask", request
        )
        return response.already_recorded

    async def update(
        self,
        address: str,
        token: str,
        *,
        progress: Progress | None = None,
        status_message: str = "",
        remote_status_input: Mapping[str, Any] | None = None,
        check_after_s: float | None = None,
    ) -> None:
        """Reports progress of the RUNNING task: `progress` and `status_message` are shown to
        users, `remote_status_input` replaces what the next status check carries, and
        `check_after_s` moves that check (clamped by the engine's policy).

        Raises:
            ValueError: a missing address or token. CompletionRefused: see the class.
        """
        request = engine_pb2.UpdateTaskRequest(
            completion_token=self._token(token), status_message=status_message
        )
        if progress is not None:
            request.progress.CopyFrom(progress.to_proto())
        if remote_status_input is not None:
            request.remote_status_input.CopyFrom(dict_to_struct(remote_status_input))
        if check_after_s is not None:
            request.check_after.FromNanoseconds(round(check_after_s * 1e9))
        await self._call(address, "UpdateTask", request)

    async def complete_from(
        self, context: RequestContext, *, data: Any = None, error: PluginError | None = None
    ) -> bool:
        """`complete` with the address and token of a request's context."""
        return await self.complete(
            context.engine_address, context.completion_token, data=data, error=error
        )

    async def close(self) -> None:
        """Closes every channel."""
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()

    async def __aenter__(self) -> CompletionClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @staticmethod
    def _token(token: str) -> str:
        if not token:
            raise ValueError(
                "no completion token: the engine did not offer push completion for this task "
                "(RequestContext.completion_token is empty)"
            )
        return token

    def _stub(self, address: str) -> engine_pb2_grpc.EngineServiceStub:
        if not address:
            raise ValueError(
                "no engine address: the engine did not offer push completion for this task "
                "(RequestContext.engine_address is empty)"
            )
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is not None:
                channel = aio.secure_channel(address, self._credentials)
            elif self._allow_insecure or _is_loopback(address):
                channel = aio.insecure_channel(address)
            else:
                raise ValueError(
                    f"refusing to send a completion token to {address} without TLS: give "
                    "credentials, or allow_insecure=True on a trusted network"
                )
            self._channels[address] = channel
        return engine_pb2_grpc.EngineServiceStub(channel)

    async def _call(self, address: str, method: str, request: Any) -> Any:
        call = getattr(self._stub(address), method)
        try:
            return await call(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as err:
            raise CompletionRefused(err.code(), err.details() or "") from None


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]").lower() if ":" in address else address
    return host == "localhost" or host.startswith("127.") or host == "::1"

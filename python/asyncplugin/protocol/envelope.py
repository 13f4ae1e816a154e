"""Pythonic request and response envelopes (see plugin.proto for every field's meaning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from asyncplugin.v1 import plugin_pb2

from .task import Task, datetime_to_timestamp, timestamp_to_datetime

InT = TypeVar("InT")
OutT = TypeVar("OutT")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestContext:
    """Who is calling and for which task; set by the engine on every call.

    `engine_address` and `completion_token` are set when the engine offers push completion:
    `asyncplugin.plugin.completion.CompletionClient` uses them to finish the task at once. The
    token is a secret and is left out of the repr.
    """

    plugin_id: str = ""
    plugin_instance_id: str = ""
    task_id: str = ""
    idempotency_key: str = ""
    check_number: int = 0
    deadline: datetime | None = None
    engine: str = ""
    engine_address: str = ""
    completion_token: str = field(default="", repr=False)

    def to_proto(self) -> plugin_pb2.RequestContext:
        """Encodes this context."""
        out = plugin_pb2.RequestContext(
            plugin_id=self.plugin_id,
            plugin_instance_id=self.plugin_instance_id,
            task_id=self.task_id,
            idempotency_key=self.idempotency_key,
            check_number=self.check_number,
            engine=self.engine,
            engine_address=self.engine_address,
            completion_token=self.completion_token,
        )
        if self.deadline is not None:
            out.deadline.CopyFrom(datetime_to_timestamp(self.deadline))
        return out

    @classmethod
    def from_proto(cls, message: plugin_pb2.RequestContext) -> RequestContext:
        """Decodes a context."""
        return cls(
            plugin_id=message.plugin_id,
            plugin_instance_id=message.plugin_instance_id,
            task_id=message.task_id,
            idempotency_key=message.idempotency_key,
            check_number=message.check_number,
            deadline=timestamp_to_datetime(message.deadline)
            if message.HasField("deadline")
            else None,
            engine=message.engine,
            engine_address=message.engine_address,
            completion_token=message.completion_token,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Generic[InT]):
    """One call from the engine: new work, or a status check of work already started.

    Attributes:
        data: the decoded payload (the plugin's input type).
        context: identities, idempotency key, check number and deadline.
        status: the engine's last record of the task; None on the initiating call.
        is_status_check: True for a status check; always read it.
        cancel_requested: True when the engine is cancelling the task (a status check too:
            `is_status_check` is also True).
        remote_status_input: (property) `status.remote_status_input`, or {} when absent.
    """

    data: InT
    context: RequestContext
    status: Task | None = None
    is_status_check: bool = False
    cancel_requested: bool = False

    @property
    def remote_status_input(self) -> dict[str, Any]:
        """What the plugin stashed in its last RUNNING answer, echoed back by the engine.

        The `remote_status_input` of `status`, or {} when there is none (on an initiating call,
        or if the plugin stashed nothing). Read-only: answer a new RUNNING Task to change it.
        """
        if self.status is None or self.status.remote_status_input is None:
            return {}
        return self.status.remote_status_input


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(Generic[OutT]):
    """A plugin's answer: `data` (done), `status` (RUNNING / FAILED / CANCELLED), or both.

    `Response(data=x)` means SUCCEEDED with x. `Response(status=Task(state=TaskState.RUNNING,
    remote_status_input={...}))` means "check back later".
    """

    data: OutT | None = None
    status: Task | None = None

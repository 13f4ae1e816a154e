"""Pythonic Task, TaskState and Progress, and their conversion to and from the wire messages."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from google.protobuf import timestamp_pb2

from asyncplugin.v1 import task_pb2

from .errors import PluginError
from .structs import dict_to_struct, struct_to_dict


class TaskState(enum.IntEnum):
    """Where a unit of work stands. Values equal the wire values of `asyncplugin.v1.TaskState`.

    There is no UNSPECIFIED member: an unset state is a protocol violation, never a default.
    """

    WAITING = task_pb2.TASK_STATE_WAITING
    RUNNING = task_pb2.TASK_STATE_RUNNING
    SUCCEEDED = task_pb2.TASK_STATE_SUCCEEDED
    FAILED = task_pb2.TASK_STATE_FAILED
    CANCELLED = task_pb2.TASK_STATE_CANCELLED

    @property
    def is_terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED: nothing moves a task out of them."""
        return self in _TERMINAL


_TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """How far along the remote work is, as the plugin reports it."""

    fraction: float | None = None
    done: int | None = None
    total: int | None = None
    stage: str = ""

    def to_proto(self) -> task_pb2.Progress:
        """Encodes this progress report."""
        out = task_pb2.Progress(stage=self.stage)
        if self.fraction is not None:
            out.fraction = self.fraction
        if self.done is not None:
            out.done = self.done
        if self.total is not None:
            out.total = self.total
        return out

    @classmethod
    def from_proto(cls, message: task_pb2.Progress) -> Progress:
        """Decodes a progress report."""
        return cls(
            fraction=message.fraction if message.HasField("fraction") else None,
            done=message.done if message.HasField("done") else None,
            total=message.total if message.HasField("total") else None,
            stage=message.stage,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """The state of one unit of asynchronous work (see task.proto for every field's meaning).

    A plugin builds one to answer RUNNING:
        Task(state=TaskState.RUNNING, remote_status_input={"remote_job_id": job_id})
    and reads the engine's record of it on a status check (`request.status`).
    """

    state: TaskState
    remote_status_input: dict[str, Any] | None = None
    remote_status_output: dict[str, Any] | None = None
    remote_status_message: str = ""
    status_message: str = ""
    status_suggestion: str = ""
    status_code: str = ""
    progress: Progress | None = None
    check_after_s: float | None = None
    error: PluginError | None = field(default=None, compare=False)
    task_id: str = ""
    retries: int = 0
    max_retries: int = 0
    check_count: int = 0
    create_time: datetime | None = None
    update_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    next_check_time: datetime | None = None

    def to_proto(self) -> task_pb2.Task:
        """Encodes this task.

        Raises:
            TypeError: a remote_status dict is not JSON-like.
            ValueError: `state` is not a TaskState member (a string, say), naming the value.
        """
        if not isinstance(self.state, TaskState):
            raise ValueError(
                f"Task.state {self.state!r} is not a TaskState (one of "
                f"{', '.join(state.name for state in TaskState)})"
            )
        out = task_pb2.Task(
            task_id=self.task_id,
            state=int(self.state),  # type: ignore[arg-type]
            status_message=self.status_message,
            status_suggestion=self.status_suggestion,
            status_code=self.status_code,
            remote_status_message=self.remote_status_message,
            retries=self.retries,
            max_retries=self.max_retries,
            check_count=self.check_count,
        )
        if self.remote_status_input is not None:
            out.remote_status_input.CopyFrom(dict_to_struct(self.remote_status_input))
        if self.remote_status_output is not None:
            out.remote_status_output.CopyFrom(dict_to_struct(self.remote_status_output))
        if self.error is not None:
            out.error.CopyFrom(self.error.to_proto())
        if self.progress is not None:
            out.progress.CopyFrom(self.progress.to_proto())
        if self.check_after_s is not None:
            out.check_after.FromNanoseconds(round(self.check_after_s * 1e9))
        for name in ("create_time", "update_time", "start_time", "end_time", "next_check_time"):
            value: datetime | None = getattr(self, name)
            if value is not None:
                getattr(out, name).CopyFrom(datetime_to_timestamp(value))
        return out

    @classmethod
    def from_proto(cls, message: task_pb2.Task) -> Task:
        """Decodes a task. Validate it first (`asyncplugin.protocol.validate`): this raises
        ValueError for an UNSPECIFIED or unknown state rather than guessing one."""
        try:
            state = TaskState(message.state)
        except ValueError:
            raise ValueError(f"Task.state {message.state} is not a valid TaskState") from None
        # One pass over the fields the message sets; every other field keeps its default, which
        # is the wire default ("" and 0) or None for an absent message.
        fields: dict[str, Any] = {"state": state}
        for descriptor, value in message.ListFields():
            known = _FROM_WIRE.get(descriptor.name)
            if known is not None:  # None: `state` (done above), or a field this version lacks
                name, convert = known
                fields[name] = value if convert is None else convert(value)
        return cls(**fields)


def datetime_to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """Encodes an aware datetime (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_RANGE: Final = (-62_135_596_800, 253_402_300_799)


def timestamp_to_datetime(value: timestamp_pb2.Timestamp) -> datetime:
    """Decodes a Timestamp into an aware UTC datetime (microseconds, truncated).

    The same value as `value.ToDatetime(tzinfo=UTC)`, computed without its pure-Python checks
    for a Timestamp within range; one outside it goes to `ToDatetime`, which raises ValueError.
    """
    seconds, nanos = value.seconds, value.nanos
    low, high = _SECONDS_RANGE
    if low <= seconds <= high and 0 <= nanos < 1_000_000_000:
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    return value.ToDatetime(tzinfo=UTC)


def _check_after_s(value: Any) -> float:
    return float(value.ToNanoseconds() / 1e9)


_FROM_WIRE: Final[dict[str, tuple[str, Callable[[Any], Any] | None]]] = {
    "remote_status_input": ("remote_status_input", struct_to_dict),
    "remote_status_output": ("remote_status_output", struct_to_dict),
    "remote_status_message": ("remote_status_message", None),
    "status_message": ("status_message", None),
    "status_suggestion": ("status_suggestion", None),
    "status_code": ("status_code", None),
    "progress": ("progress", Progress.from_proto),
    "check_after": ("check_after_s", _check_after_s),
    "error": ("error", PluginError.from_proto),
    "task_id": ("task_id", None),
    "retries": ("retries", None),
    "max_retries": ("max_retries", None),
    "check_count": ("check_count", None),
    "create_time": ("create_time", timestamp_to_datetime),
    "update_time": ("update_time", timestamp_to_datetime),
    "start_time": ("start_time", timestamp_to_datetime),
    "end_time": ("end_time", timestamp_to_datetime),
    "next_check_time": ("next_check_time", timestamp_to_datetime),
}
"""Each wire Task field but `state`: its Task field and how it is converted (None: copied)."""

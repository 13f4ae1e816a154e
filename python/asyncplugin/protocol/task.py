"""Pythonic Task, TaskState and Progress, and their conversion to and from the wire messages."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from google.protobuf import timestamp_pb2

from asyncplugin.v1 import task_pb2

from .errors import PluginError
from .structs import fill_struct, struct_to_dict


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
_STATES: Final[dict[int, TaskState]] = {int(state): state for state in TaskState}


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
        out = task_pb2.Task()
        self.fill_proto(out)
        return out

    def fill_proto(self, out: task_pb2.Task) -> None:
        """Encodes this task into `out`, an empty message (a message field: no copy is made).

        Raises as `to_proto` does; `out` is then partly written.
        """
        if not isinstance(self.state, TaskState):
            raise ValueError(
                f"Task.state {self.state!r} is not a TaskState (one of "
                f"{', '.join(state.name for state in TaskState)})"
            )
        out.state = self.state.value
        # Only what differs from the wire default is written: each assignment costs a call
        # into protobuf, and an unset field encodes the same as its default. Anything that is
        # not exactly the default (0.0 for a count, say) is assigned, so protobuf refuses it as
        # it did when all were passed to the constructor; None means unset there, as here.
        if self.task_id != "" and self.task_id is not None:
            out.task_id = self.task_id
        if self.status_message != "" and self.status_message is not None:
            out.status_message = self.status_message
        if self.status_suggestion != "" and self.status_suggestion is not None:
            out.status_suggestion = self.status_suggestion
        if self.status_code != "" and self.status_code is not None:
            out.status_code = self.status_code
        if self.remote_status_message != "" and self.remote_status_message is not None:
            out.remote_status_message = self.remote_status_message
        if self.retries is not None and (self.retries != 0 or type(self.retries) is not int):
            out.retries = self.retries
        if self.max_retries is not None and (
            self.max_retries != 0 or type(self.max_retries) is not int
        ):
            out.max_retries = self.max_retries
        if self.check_count is not None and (
            self.check_count != 0 or type(self.check_count) is not int
        ):
            out.check_count = self.check_count
        if self.remote_status_input is not None:
            fill_struct(out.remote_status_input, self.remote_status_input)
        if self.remote_status_output is not None:
            fill_struct(out.remote_status_output, self.remote_status_output)
        if self.error is not None:
            out.error.CopyFrom(self.error.to_proto())
        if self.progress is not None:
            out.progress.CopyFrom(self.progress.to_proto())
        if self.check_after_s is not None:
            out.check_after.FromNanoseconds(round(self.check_after_s * 1e9))
        if (
            self.create_time is not None
            or self.update_time is not None
            or self.start_time is not None
            or self.end_time is not None
            or self.next_check_time is not None
        ):
            for name in _TIME_FIELDS:
                value: datetime | None = getattr(self, name)
                if value is not None:
                    getattr(out, name).CopyFrom(datetime_to_timestamp(value))

    @classmethod
    def from_proto(cls, message: task_pb2.Task) -> Task:
        """Decodes a task. Validate it first (`asyncplugin.protocol.validate`): this raises
        ValueError for an UNSPECIFIED or unknown state rather than guessing one."""
        state = _STATES.get(message.state)  # a dict lookup: the enum's call costs ten times more
        if state is None:
            raise ValueError(f"Task.state {message.state} is not a valid TaskState")
        # Presence tests and plain reads: cheaper than listing the set fields (ListFields builds
        # a descriptor and a value wrapper per field). An unset scalar reads as its wire default,
        # which is the dataclass default; an absent message is None.
        has = message.HasField
        return cls(
            state=state,
            remote_status_input=struct_to_dict(message.remote_status_input)
            if has("remote_status_input")
            else None,
            remote_status_output=struct_to_dict(message.remote_status_output)
            if has("remote_status_output")
            else None,
            remote_status_message=message.remote_status_message,
            status_message=message.status_message,
            status_suggestion=message.status_suggestion,
            status_code=message.status_code,
            progress=Progress.from_proto(message.progress) if has("progress") else None,
            check_after_s=_check_after_s(message.check_after) if has("check_after") else None,
            error=PluginError.from_proto(message.error) if has("error") else None,
            task_id=message.task_id,
            retries=message.retries,
            max_retries=message.max_retries,
            check_count=message.check_count,
            create_time=timestamp_to_datetime(message.create_time) if has("create_time") else None,
            update_time=timestamp_to_datetime(message.update_time) if has("update_time") else None,
            start_time=timestamp_to_datetime(message.start_time) if has("start_time") else None,
            end_time=timestamp_to_datetime(message.end_time) if has("end_time") else None,
            next_check_time=timestamp_to_datetime(message.next_check_time)
            if has("next_check_time")
            else None,
        )


_TIME_FIELDS: Final = ("create_time", "update_time", "start_time", "end_time", "next_check_time")


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
        return _EPOCH + timedelta(0, seconds, nanos // 1000)  # positional: keywords cost more
    return value.ToDatetime(tzinfo=UTC)


def _check_after_s(value: Any) -> float:
    return float(value.ToNanoseconds() / 1e9)


_Decoder = Callable[[task_pb2.Task], Any]


def _optional(name: str, decode: Callable[[Any], Any]) -> _Decoder:
    """A decoder of the message field `name`: None when absent, else `decode(field)`."""

    def read(message: task_pb2.Task) -> Any:
        return decode(getattr(message, name)) if message.HasField(name) else None  # type: ignore[arg-type]

    return read


def _plain(name: str) -> _Decoder:
    """A decoder of the scalar field `name`: its wire value (unset reads as the default)."""

    def read(message: task_pb2.Task) -> Any:
        return getattr(message, name)

    return read


_DECODERS: Final[dict[str, _Decoder]] = {
    "remote_status_input": _optional("remote_status_input", struct_to_dict),
    "remote_status_output": _optional("remote_status_output", struct_to_dict),
    "remote_status_message": _plain("remote_status_message"),
    "status_message": _plain("status_message"),
    "status_suggestion": _plain("status_suggestion"),
    "status_code": _plain("status_code"),
    "progress": _optional("progress", Progress.from_proto),
    "check_after_s": _optional("check_after", _check_after_s),
    "error": _optional("error", PluginError.from_proto),
    "task_id": _plain("task_id"),
    "retries": _plain("retries"),
    "max_retries": _plain("max_retries"),
    "check_count": _plain("check_count"),
    "create_time": _optional("create_time", timestamp_to_datetime),
    "update_time": _optional("update_time", timestamp_to_datetime),
    "start_time": _optional("start_time", timestamp_to_datetime),
    "end_time": _optional("end_time", timestamp_to_datetime),
    "next_check_time": _optional("next_check_time", timestamp_to_datetime),
}
"""How each field but `state` is read from the wire message (as `Task.from_proto` does)."""


def _lazy_field(name: str) -> property:
    """The property behind a `_WireTask` field: the Task's own slot, filled on first read."""
    slot = Task.__dict__[name]

    def read(self: _WireTask) -> Any:
        decoded = self._decoded
        if name in decoded:
            return slot.__get__(self, Task)
        # Not read yet: the slot is still empty (a set is asked, not the slot: an empty
        # slot's AttributeError costs more than the decoding of a small field).
        value = _DECODERS[name](self._wire)
        slot.__set__(self, value)
        decoded.add(name)  # type: ignore[union-attr]  # a frozenset only when all are read
        return value

    return property(read, doc=f"`Task.{name}`, decoded from the wire message on first read.")


class _WireTask(Task):
    """A Task whose fields (all but `state`) are decoded from its validated wire message on
    first read.

    What a status check's handler gets as `request.status`: reading only
    `remote_status_input` (or nothing) never pays for the timestamps, the error envelope or the
    dataclass's nineteen fields. It behaves as a plain Task: equal to one with the same fields,
    the same repr, `dataclasses.replace`, and copies and pickles (a plain Task).
    """

    __slots__ = ("_decoded", "_wire")
    _decoded: set[str] | frozenset[str]
    _wire: task_pb2.Task

    def __init__(self, *args: Any, **values: Any) -> None:
        # `dataclasses.replace` builds a new instance of the same class from every field: made
        # as a plain Task (its defaults and checks), then copied slot by slot (the properties
        # have no setter, so Task's own __init__ cannot write them here).
        plain = Task(*args, **values)
        for slot in _SLOTS:
            slot.__set__(self, slot.__get__(plain, Task))
        object.__setattr__(self, "_wire", None)
        object.__setattr__(self, "_decoded", _ALL_DECODED)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _COMPARED)

    __hash__ = Task.__hash__  # the same fields, read through the properties

    def __repr__(self) -> str:
        text = Task.__repr__(self)
        return "Task" + text[text.index("(") :]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_plain_task, (tuple((name, getattr(self, name)) for name in _FIELD_NAMES),))


for _name in _DECODERS:
    setattr(_WireTask, _name, _lazy_field(_name))
del _name

_STATE_SLOT: Any = Task.__dict__["state"]
_FIELD_NAMES: Final = tuple(f.name for f in fields(Task))
_SLOTS: Final[tuple[Any, ...]] = tuple(Task.__dict__[name] for name in _FIELD_NAMES)
_COMPARED: Final = tuple(f.name for f in fields(Task) if f.compare)
_ALL_DECODED: Final = frozenset(_FIELD_NAMES)


def _plain_task(fields: tuple[tuple[str, Any], ...]) -> Task:
    return Task(**dict(fields))


def task_from_wire(message: task_pb2.Task) -> Task:
    """The Task a validated wire message holds, each field decoded on first read.

    Equal to `Task.from_proto(message)`, and as cheap to make as one dataclass slot. The message
    must have passed validation (`asyncplugin.protocol.validate`) and must not change afterwards:
    a field is read from it when the Task's field is first read.

    Raises:
        ValueError: the state is UNSPECIFIED or unknown (as `Task.from_proto`).
    """
    state = _STATES.get(message.state)
    if state is None:
        raise ValueError(f"Task.state {message.state} is not a valid TaskState")
    task = _WireTask.__new__(_WireTask)
    _STATE_SLOT.__set__(task, state)
    object.__setattr__(task, "_wire", message)
    object.__setattr__(task, "_decoded", set())
    return task

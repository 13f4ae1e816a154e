"""Steamship-style plugins on asyncplugin: the names such a plugin imports, mapped onto the SDK.

A plugin written for Steamship's Python SDK runs with its import lines changed to this module:

    from asyncplugin.compat.steamship import (
        InvocableResponse, PluginRequest, PluginService, Response, SteamshipError, Task, TaskState,
    )

    class SomePlugin:
        def run(self, request: PluginRequest[dict]) -> Union[dict, Response[dict]]:
            if request.is_status_check:
                job_id = request.remote_status_input.get("remote_job_id")
                ...
            job_id = api.start(request.data.data)
            return Response(status=Task(state=TaskState.running,
                                        remote_status_input={"remote_job_id": job_id}))

and is served as any plugin (`asyncplugin serve module:SomePlugin`): `serve` accepts any class
with `run`. What maps to what:

| Steamship | here |
| --- | --- |
| `PluginRequest[T]` | a `Request[T]`; a dict payload reads as attributes (`request.data.data`) |
| `InvocableResponse` / `Response` | a `Response` that also takes `error=` (a FAILED answer) |
| `Task(state=..., remote_status_input=...)` | a `Task`; `state` may be a string, any case |
| `TaskState.running` / `RUNNING` | both spellings, each the SDK's `TaskState.RUNNING` |
| `SteamshipError("message", error=exc)` | a `PluginError`: FAILED with the error envelope |
| `PluginService[IN, OUT]` | an abstract base with `run`; IN/OUT declare the payload types |

The dict payload's attribute access comes from `PluginRequest`: it is applied when `run`'s
request parameter is annotated `PluginRequest[...]` (the SDK converts the request to the class
`run` names). A missing key reads as None, as an unset field of a Steamship model does; a key
named like a dict method (`items`, `keys`, `get`, ...) or starting with "_" needs
`request.data["key"]`. Without the annotation `request.data` is a plain dict.

Differences from Steamship (docs/migrating-from-steamship.md has them all): an answer with
neither data nor status (`InvocableResponse()`) is refused as NO_DATA_OR_STATUS, not taken as
success; errors travel as FAILED Tasks carrying the envelope; empty strings (codes,
suggestions, messages) are "" rather than None.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from asyncplugin.plugin.normalize import InvalidReturn
from asyncplugin.protocol import PluginError, Request, RequestContext
from asyncplugin.protocol import Response as _Response
from asyncplugin.protocol import Task as _Task
from asyncplugin.protocol import TaskState as _State
from asyncplugin.protocol.payload import PayloadType, payload_kind

__all__ = [
    "DEFAULT_ERROR_MESSAGE",
    "AttrDict",
    "InvocableResponse",
    "PluginRequest",
    "PluginRequestContext",
    "PluginService",
    "Response",
    "SteamshipError",
    "Task",
    "TaskState",
    "parse_state",
]

InT = TypeVar("InT")
OutT = TypeVar("OutT")

DEFAULT_ERROR_MESSAGE = "Undefined remote error"
"""The message of a SteamshipError built without one (Steamship's own default)."""

PluginRequestContext = RequestContext
"""Steamship's PluginRequestContext: `plugin_id` and `plugin_instance_id` exist here too, plus
`task_id`, `idempotency_key`, `check_number` and `deadline`."""


class TaskState:
    """Task states in both spellings: `TaskState.running is TaskState.RUNNING`.

    Each member is the SDK's `asyncplugin.TaskState` member, so comparisons with
    `request.status.state` work either way. Steamship has no CANCELLED; it is here for answers
    to cancel requests.
    """

    WAITING = waiting = _State.WAITING
    RUNNING = running = _State.RUNNING
    SUCCEEDED = succeeded = _State.SUCCEEDED
    FAILED = failed = _State.FAILED
    CANCELLED = cancelled = _State.CANCELLED


def parse_state(value: Any) -> _State:
    """The SDK TaskState for `value`: a TaskState member, or its name as a string in any case.

    Raises:
        InvalidReturn: `value` is not a state; the answer being built becomes FAILED with code
            INVALID_PLUGIN_RESPONSE naming the value (rule STATE_UNKNOWN, or STATE_UNSPECIFIED
            when no state was given).
    """
    if isinstance(value, _State):
        return value
    if value is None:
        raise InvalidReturn("STATE_UNSPECIFIED", "Task.state is not set; give TaskState.RUNNING")
    if isinstance(value, str):
        member = _State.__members__.get(value.upper())
        if member is not None:
            return member
    names = ", ".join(repr(state.name.lower()) for state in _State)
    raise InvalidReturn(
        "STATE_UNKNOWN",
        f"Task.state {value!r} is not a task state; use TaskState.RUNNING (or .running) or one "
        f"of the strings {names} (any case)",
    )


_TEXT_FIELDS = frozenset(
    {"status_message", "status_suggestion", "status_code", "remote_status_message", "task_id"}
)
_COUNT_FIELDS = frozenset({"retries", "max_retries", "check_count"})


class Task(_Task):
    """The SDK's Task, built the Steamship way: `state` may be a string ("running", "RUNNING")
    and None stands for an empty text field or a zero count.

    Example:
        Task(state=TaskState.running, remote_status_input={"remote_job_id": job_id})

    A state that is not a state ("runing") makes the answer FAILED with code
    INVALID_PLUGIN_RESPONSE naming the value (see `parse_state`). Fields Steamship's Task has and
    this protocol does not (`user_id`, `space_id`, `input`, `output`, ...) are refused by name.
    """

    __slots__ = ()

    def __init__(self, *, state: Any = None, **fields: Any) -> None:
        for name, value in fields.items():
            if value is None and name in _TEXT_FIELDS:
                fields[name] = ""
            elif value is None and name in _COUNT_FIELDS:
                fields[name] = 0
        super().__init__(state=parse_state(state), **fields)


class SteamshipError(PluginError):
    """Steamship's error, as the SDK's error envelope: raise it to answer FAILED.

    Takes the message positionally or by name, as Steamship's does; None for any text means "".

    Example:
        raise SteamshipError("The transcription failed.", error=exc)

    Args:
        message: the message for the end user (default: "Undefined remote error").
        internal_message: detail for operators.
        suggestion: what the end user could do about it.
        code: a machine-readable reason.
        error: the wrapped cause (an exception, a PluginError, or a string), recorded in the
            envelope's wrapped error.
    """

    def __init__(
        self,
        message: str | None = DEFAULT_ERROR_MESSAGE,
        internal_message: str | None = None,
        suggestion: str | None = None,
        code: str | None = None,
        error: BaseException | str | None = None,
    ) -> None:
        super().__init__(
            message=message or DEFAULT_ERROR_MESSAGE,
            internal_message=internal_message or "",
            suggestion=suggestion or "",
            code=code or "",
            error=error,
        )

    @property
    def internalMessage(self) -> str:
        """Steamship's name for `internal_message`."""
        return self.internal_message

    def to_dict(self) -> dict[str, str]:
        """The envelope's fields under Steamship's keys."""
        return {
            "message": self.message,
            "internalMessage": self.internal_message,
            "suggestion": self.suggestion,
            "code": self.code,
            "error": "" if self.error is None else str(self.error),
        }


class InvocableResponse(_Response[OutT]):
    """The SDK's Response, built the Steamship way: `error=` makes it a FAILED answer.

    `InvocableResponse(data=x)` is SUCCEEDED with x; `InvocableResponse(status=Task(...))`
    answers that status; `InvocableResponse(error=SteamshipError(...))` is FAILED with the
    envelope (another exception is wrapped in a SteamshipError carrying its text). `json=` is
    another name for `data=`. Steamship's `string=`, `_bytes=`, `http=` and `mime_type=` have no
    counterpart here (payloads are dicts, pydantic models or protobuf messages) and are refused.
    An empty `InvocableResponse()` is refused as NO_DATA_OR_STATUS, not taken as success.
    """

    __slots__ = ()

    def __init__(
        self,
        status: _Task | None = None,
        error: BaseException | None = None,
        *,
        data: OutT | None = None,
        json: OutT | None = None,
    ) -> None:
        if data is not None and json is not None:
            raise TypeError("InvocableResponse takes data= or json=, not both")
        if data is None:
            data = json
        if error is not None:
            status = _failed(status, error)
        super().__init__(data=data, status=status)


Response = InvocableResponse
"""The older Steamship name (`steamship.app.Response`)."""


def _failed(status: _Task | None, error: BaseException) -> _Task:
    """A FAILED Task carrying `error` (kept from `status` where given, as Steamship does)."""
    envelope = (
        error if isinstance(error, PluginError) else SteamshipError(_text(error), error=error)
    )
    base = status if status is not None else _Task(state=_State.FAILED)
    return dataclasses.replace(
        base,
        state=_State.FAILED,
        error=envelope,
        status_message=envelope.message,
        status_suggestion=envelope.suggestion,
        status_code=envelope.code,
    )


def _text(error: BaseException) -> str:
    return str(error) or type(error).__name__


class AttrDict(dict[str, Any]):
    """A dict whose keys also read as attributes: `payload.data` is `payload["data"]`.

    A missing key reads as None (an unset field of a Steamship model is None). Names starting
    with "_" and the dict's own methods (`items`, `keys`, `get`, ...) are not keys: read those
    keys with `payload["items"]`. Nested dicts, also inside lists, are AttrDicts too.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)


def attr_dict(value: Any) -> Any:
    """`value` with every dict in it (nested in dicts and lists too) made an AttrDict."""
    if isinstance(value, Mapping):
        return AttrDict({key: attr_dict(item) for key, item in value.items()})
    if isinstance(value, list):
        return [attr_dict(item) for item in value]
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginRequest(Request[InT]):
    """The SDK's Request, as Steamship plugins read it: a dict payload reads as attributes.

    The SDK passes `run` a PluginRequest when `run`'s request parameter is annotated with it.
    Everything else is the SDK's Request: `data`, `context`, `status` (the engine's last record
    of the task; its `remote_status_input` is what the plugin stashed), `is_status_check`,
    `cancel_requested`, and `remote_status_input` ({} when there is none).
    """

    @classmethod
    def from_request(cls, request: Request[Any]) -> PluginRequest[Any]:
        """The same request, its dict payload (if any) made an AttrDict."""
        data = request.data
        if isinstance(data, dict) and not isinstance(data, AttrDict):
            data = attr_dict(data)
        return cls(
            data=data,
            context=request.context,
            status=request.status,
            is_status_check=request.is_status_check,
            cancel_requested=request.cancel_requested,
        )


class PluginService(ABC, Generic[InT, OutT]):
    """Steamship's abstract plugin base: implement `run(request)`.

    `PluginService[In, Out]` declares the payload types (a pydantic model, a protobuf message
    class, or dict), as `AsyncPlugin[In, Out]` does. A subclass that leaves a method abstract
    is refused by `asyncplugin serve`, naming the method.

    Args:
        client: kept as `self.client` (Steamship passes its API client; nothing here uses it).
        config: kept as `self.config`, an AttrDict (`self.config.api_key`).
        context: kept as `self.context`.
    """

    # Set only by a parameterisation (PluginService[In, Out]); otherwise the SDK reads the
    # payload types from `run`'s annotations.
    input_type: ClassVar[PayloadType]
    output_type: ClassVar[PayloadType]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin = get_origin(base)
            if not (isinstance(origin, type) and issubclass(origin, PluginService)):
                continue
            for attr, arg in zip(("input_type", "output_type"), get_args(base), strict=False):
                kind = payload_kind(arg)
                if kind is not None and attr not in cls.__dict__:
                    setattr(cls, attr, kind)

    def __init__(
        self, client: Any = None, config: Mapping[str, Any] | None = None, context: Any = None
    ) -> None:
        self.client = client
        self.config = attr_dict(dict(config or {}))
        self.context = context

    @abstractmethod
    def run(self, request: PluginRequest[InT]) -> OutT | InvocableResponse[OutT]:
        """Answers one call: new work (`request.is_status_check` false), a status check, or a
        cancel request (`request.cancel_requested`, a status check too)."""

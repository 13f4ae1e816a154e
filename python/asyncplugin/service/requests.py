"""The service's checks of what clients send, before anything is recorded.

Each check returns the clean value or raises `BadRequest` naming the field. Page tokens are
opaque to clients: base64url JSON of where the page ended plus a digest of the filters, so a
token used with other filters is refused (AIP-158) instead of silently skipping tasks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import grpc

from asyncplugin.engine import TaskCursor, TaskFilter
from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.protocol import TaskState
from asyncplugin.protocol.methods import GENERIC_METHOD
from asyncplugin.protocol.methods import check_method as check_method_path

from .convert import seconds
from .errors import BadRequest

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Limits",
    "check_labels",
    "check_method",
    "check_page_size",
    "check_payload",
    "check_target",
    "check_text",
    "list_filter",
    "page_token",
    "read_page_token",
]

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000

_SCHEMES: Final = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")
_HOST_PORT: Final = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_IDENT: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_TYPE_NAME: Final = re.compile(rf"^(?:{_IDENT}\.)*{_IDENT}$")
_LABEL_KEY: Final = re.compile(r"^[a-z][a-z0-9_.\-/]{0,62}$")
_MAX_LABELS: Final = 64
_MAX_LABEL_VALUE: Final = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Size limits the service enforces on submitted tasks.

    Attributes:
        max_payload_bytes: the largest payload accepted (it travels in every call to the
            plugin, next to the envelope, so it stays below the 4 MiB message limit).
    """

    max_payload_bytes: int = 4 * 1024 * 1024 - 256 * 1024


def check_target(target: str) -> str:
    """A plugin address: "host:port" (port 1-65535), "[v6]:port", or a gRPC URI scheme."""
    if not target:
        raise BadRequest("target", "is required ('host:port' of the plugin)")
    if len(target) > 512 or any(not "!" <= char <= "~" for char in target):
        raise BadRequest("target", f"{target[:64]!r} is not a gRPC address ('host:port')")
    if target.startswith(_SCHEMES):
        return target
    match = _HOST_PORT.match(target)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise BadRequest("target", f"{target!r} is not 'host:port' with a port in 1..65535")
    return target


def check_method(method: str) -> str:
    """A full method path; "" is PluginService/Invoke, and the leading "/" may be left out."""
    if not method:
        return GENERIC_METHOD
    path = method if method.startswith("/") else "/" + method
    try:
        return check_method_path(path)
    except ValueError:
        raise BadRequest(
            "method", f"{method!r} is not a method path like '/package.Service/Method'"
        ) from None


def check_payload(payload: bytes, limits: Limits) -> bytes:
    """The payload, if within the size limit (RESOURCE_EXHAUSTED otherwise)."""
    if len(payload) > limits.max_payload_bytes:
        raise BadRequest(
            "payload",
            f"{len(payload)} bytes is over the limit of {limits.max_payload_bytes} bytes",
            code=grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
    return payload


def check_labels(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Labels as sorted pairs, each key and value checked (see SubmitTaskRequest.labels)."""
    if len(labels) > _MAX_LABELS:
        raise BadRequest("labels", f"{len(labels)} labels is more than {_MAX_LABELS}")
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise BadRequest(
                f"labels[{key!r}]",
                "a label key is 1-63 of lowercase letters, digits, '_', '-', '.', '/', "
                "starting with a letter",
            )
        if len(value) > _MAX_LABEL_VALUE or any(char < " " for char in value):
            raise BadRequest(
                f"labels[{key!r}]",
                f"a label value is at most {_MAX_LABEL_VALUE} characters, no control characters",
            )
    return tuple(sorted(labels.items()))


def check_text(field: str, value: str, *, max_chars: int, printable_ascii: bool = False) -> str:
    """A short text field within its length (and, if asked, printable ASCII without spaces)."""
    if len(value) > max_chars:
        raise BadRequest(field, f"is longer than {max_chars} characters")
    if printable_ascii and any(not "!" <= char <= "~" for char in value):
        raise BadRequest(field, "must be printable ASCII without spaces")
    return value


def check_type_name(value: str) -> str:
    """A full message type name, or ""."""
    if value and not _TYPE_NAME.match(value):
        raise BadRequest("result_type", f"{value!r} is not a full message name like 'pkg.Msg'")
    return value


def check_page_size(size: int) -> int:
    """The page size: 0 means the default; over the cap is refused (naming it)."""
    if size < 0:
        raise BadRequest("page_size", f"must not be negative, got {size}")
    if size > MAX_PAGE_SIZE:
        raise BadRequest("page_size", f"{size} is over the maximum of {MAX_PAGE_SIZE}")
    return size or DEFAULT_PAGE_SIZE


def list_filter(request: engine_pb2.ListTasksRequest) -> TaskFilter:
    """The store filter a ListTasksRequest asks for."""
    states: list[TaskState] = []
    for value in request.states:
        try:
            states.append(TaskState(value))
        except ValueError:
            raise BadRequest("states", f"{value} is not a TaskState") from None
        if value == 0:
            raise BadRequest("states", "TASK_STATE_UNSPECIFIED is not a state to filter by")
    for key in request.labels:
        if not _LABEL_KEY.match(key):
            raise BadRequest(f"labels[{key!r}]", "is not a valid label key")
    return TaskFilter.of(
        states=states,
        target=request.target or None,
        labels=dict(request.labels),
        created_after=seconds(request.created_after) if request.HasField("created_after") else None,
        created_before=seconds(request.created_before)
        if request.HasField("created_before")
        else None,
    )


def _digest(where: TaskFilter) -> str:
    text = json.dumps(
        [
            sorted(int(s) for s in where.states) if where.states is not None else None,
            where.target,
            where.labels,
            where.created_after,
            where.created_before,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def page_token(cursor: TaskCursor, where: TaskFilter) -> str:
    """The opaque token of the page after `cursor`."""
    body = json.dumps({"t": cursor.create_time, "i": cursor.task_id, "f": _digest(where)})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def read_page_token(token: str, where: TaskFilter) -> TaskCursor | None:
    """The cursor a token holds (None for ""); a token for other filters is refused."""
    if not token:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = TaskCursor(float(body["t"]), str(body["i"]))
        digest = str(body["f"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadRequest("page_token", "is not a token this service issued") from None
    if digest != _digest(where):
        raise BadRequest("page_token", "was issued for different filters; start again")
    return cursor

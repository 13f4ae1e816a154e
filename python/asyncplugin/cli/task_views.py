"""What `tasks show` and `tasks result` print about one task, for people and as JSON.

A result is decoded into the method's output type, found through the plugin's server
reflection; when the plugin cannot be asked, a JSON-object result (google.protobuf.Struct) is
still shown as JSON and anything else as base64, with a note saying why.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from rich.table import Table

from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.v1 import task_pb2

from .common import Connection
from .endpoint import tcp_accepts
from .output import message_dict
from .payload_types import GENERIC, PayloadTypes, Reflection, decode_strict, result_type, types_of
from .progress import duration_text, next_check_text, progress_text, state_text, timestamp

__all__ = ["DecodedResult", "decode_result", "details_table", "result_document", "task_document"]

_SHOWN_RESULT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class DecodedResult:
    """A task's result as JSON-like values, and how it was decoded."""

    value: Any
    type_name: str
    note: str = ""


def _payload_types(
    task: engine_pb2.Task, link: Connection | None, timeout_s: float
) -> tuple[PayloadTypes, str]:
    """The method's payload types through reflection, or GENERIC and why not."""
    if link is None:
        return GENERIC, "the plugin was not asked for the result's type"
    if tcp_accepts(task.target, timeout_s=min(timeout_s, 1.0)) is False:
        return GENERIC, f"the plugin at {task.target} does not answer, so its types are unknown"
    with Reflection(
        task.target, credentials=link.credentials(), options=link.channel_options()
    ) as reflection:
        if not reflection.ready(timeout_s):
            return GENERIC, f"the plugin at {task.target} does not answer, so its types are unknown"
        try:
            method = reflection.method(task.method)
        except (grpc.RpcError, KeyError):
            return GENERIC, f"the plugin at {task.target} offers no reflection"
    if method is None:
        return GENERIC, f"the plugin at {task.target} does not describe {task.method}"
    return types_of(method), ""


def decode_result(
    task: engine_pb2.Task, link: Connection | None, *, timeout_s: float = 2.0
) -> DecodedResult | None:
    """The task's result decoded (None when it has none)."""
    if not task.HasField("result"):
        return None
    types, why = _payload_types(task, link, timeout_s)
    if types.output_type is not None:
        try:
            return DecodedResult(decode_strict(task.result, types.output_type), result_type(types))
        except ValueError as err:
            why = f"the result is {err}"
    try:
        value = decode_strict(task.result, None)
    except ValueError:
        encoded = base64.b64encode(task.result).decode()
        note = f"{why}; shown as base64 (asyncplugin tasks result {task.task_id} -o raw)"
        return DecodedResult({"bytes_base64": encoded}, "", note.lstrip("; "))
    if types.input_type is None and types.output_type is None and not why:
        return DecodedResult(value, "google.protobuf.Struct")
    note = f"{why}; decoded as a JSON object (google.protobuf.Struct)" if why else ""
    return DecodedResult(value, "google.protobuf.Struct", note)


def details_table(
    task: engine_pb2.Task,
    *,
    result: DecodedResult | None,
    show_remote_input: bool,
    polled: bool = True,
) -> Table:
    """Every field of a task worth reading, one per row."""
    table = Table(show_header=False, title=f"task {task.task_id}")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("state", state_text(task.state))
    table.add_row("target", f"{task.target} {task.method}")
    if task.labels:
        table.add_row("labels", ", ".join(f"{k}={v}" for k, v in sorted(task.labels.items())))
    if task.request_id:
        table.add_row("request id", task.request_id)
    table.add_row("created", timestamp(task, "create_time"))
    table.add_row("updated", timestamp(task, "update_time"))
    table.add_row("started", timestamp(task, "start_time"))
    table.add_row("ended", timestamp(task, "end_time"))
    if task.HasField("end_time"):
        took = task.end_time.ToNanoseconds() / 1e9 - task.create_time.ToNanoseconds() / 1e9
        table.add_row("took", duration_text(took))
    table.add_row("deadline", timestamp(task, "deadline"))
    table.add_row(
        "checks", f"{task.check_count}" + (f" ({task.retries} retries)" if task.retries else "")
    )
    next_check = timestamp(task, "next_check_time")
    if task.HasField("next_check_time"):
        next_check += f" ({next_check_text(task, now=time.time(), polled=polled)})"
    table.add_row("next check", next_check)
    table.add_row("idempotency key", task.idempotency_key)
    if task.plugin_id or task.plugin_instance_id:
        table.add_row("plugin", f"{task.plugin_id or '-'} / {task.plugin_instance_id or '-'}")
    if task.metadata_keys:
        table.add_row("call metadata", ", ".join(f"{key}=<redacted>" for key in task.metadata_keys))
    # Once the task ended, the plugin's progress and messages are those of its last RUNNING
    # answer: shown as such (and not at all for a success, where they no longer hold).
    ended = task.HasField("end_time")
    last = "last " if ended else ""
    if task.state != task_pb2.TASK_STATE_SUCCEEDED:
        if task.HasField("progress"):
            table.add_row(f"{last}progress", progress_text(task.progress) or "-")
        for label, value in (
            ("status message", task.status_message),
            ("suggestion", task.status_suggestion),
            ("status code", task.status_code),
            ("remote message", task.remote_status_message),
        ):
            if value and task.state != task_pb2.TASK_STATE_FAILED:
                table.add_row(f"{last}{label}", value)
    if task.HasField("remote_status_input"):
        shown = (
            json.dumps(message_dict(task.remote_status_input))
            if show_remote_input
            else ("(hidden; --show-remote-input)")
        )
        table.add_row("remote_status_input", shown)
    if task.HasField("remote_status_output"):
        table.add_row("remote_status_output", json.dumps(message_dict(task.remote_status_output)))
    if task.HasField("error"):
        table.add_row("error", json_format.MessageToJson(task.error, indent=1))
    table.add_row("payload", f"{task.payload_size_bytes} bytes")
    if result is not None:
        text = json.dumps(result.value, indent=1)
        if len(text) > _SHOWN_RESULT_CHARS:
            text = text[:_SHOWN_RESULT_CHARS] + f"\n... (asyncplugin tasks result {task.task_id})"
        kind = f" ({result.type_name})" if result.type_name else ""
        table.add_row(f"result{kind}", text)
        if result.note:
            table.add_row("", f"[dim]{result.note}[/dim]")
    elif task.HasField("result_size_bytes"):
        table.add_row("result", f"{task.result_size_bytes} bytes")
    return table


def task_document(task: engine_pb2.Task, *, show_remote_input: bool) -> dict[str, Any]:
    """The task in the JSON mapping; `remote_status_input` only when asked for."""
    shown = engine_pb2.Task()
    shown.CopyFrom(task)
    if not show_remote_input:
        shown.ClearField("remote_status_input")
    return message_dict(shown)


def result_document(task: engine_pb2.Task, result: DecodedResult | None) -> dict[str, Any]:
    """`tasks result -o json`: the task's id, state and decoded result (or error)."""
    body: dict[str, Any] = {
        "task_id": task.task_id,
        "state": task_pb2.TaskState.Name(task.state),
    }
    if result is not None:
        body["result_type"] = result.type_name
        body["data"] = result.value
    if task.HasField("error"):
        body["error"] = message_dict(task.error)
    return body

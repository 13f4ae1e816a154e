"""Turning whatever a handler returned or raised into a valid answer (an InvokeResponse).

The rules, exactly:
  - the output payload itself (an instance of `output_type`; a dict for dict plugins), or
    `Response(data=...)`: SUCCEEDED with that data;
  - `Response(status=Task(...))`: that status (RUNNING, FAILED, CANCELLED...), with data if set;
  - `PluginError` raised: FAILED carrying the error envelope; the task's status_message,
    status_suggestion and status_code are copied from it;
  - any other exception: FAILED with code PLUGIN_INTERNAL_ERROR and a safe message; the log
    names the task, the exception and where it was raised (with the traceback), and the
    exception's type, message and traceback go onto the wire (`internal_message`) only when
    debug is on;
  - anything else (None, a wrong type, an answer breaking a protocol rule): FAILED with code
    INVALID_PLUGIN_RESPONSE and a message naming the problem.
Each of these is an in-band answer (gRPC OK); the SDK validates every answer before sending it.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message as pb_message

from asyncplugin.protocol import (
    PluginError,
    RequestContext,
    Response,
    Task,
    TaskState,
    encode_payload,
    limits,
    payload_type_name,
    response_violations,
)
from asyncplugin.protocol.payload import PayloadType
from asyncplugin.protocol.text import truncate, truncate_head
from asyncplugin.v1 import plugin_pb2

logger = logging.getLogger("asyncplugin.plugin")

PLUGIN_INTERNAL_ERROR = "PLUGIN_INTERNAL_ERROR"
"""Code of the FAILED answer sent when a handler raises anything but PluginError."""

INVALID_PLUGIN_RESPONSE = "INVALID_PLUGIN_RESPONSE"
"""Code of the FAILED answer sent when a handler's return value is not a valid answer."""

MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
"""Code of the FAILED answer sent when the answer would exceed the server's max message size."""


class InvalidReturn(Exception):
    """A handler returned something that is not a valid answer; `problem` names what."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem = problem
        self.detail = detail


def build_response(
    result: Any, *, output_type: PayloadType, cancel_requested: bool
) -> plugin_pb2.InvokeResponse:
    """Encodes a handler's return value, or raises InvalidReturn naming the problem."""
    if isinstance(result, Task):
        raise InvalidReturn(
            "WRONG_RETURN_TYPE", "the handler returned a bare Task; return Response(status=task)"
        )
    if isinstance(result, Response):
        data, status = result.data, result.status
    elif result is None:
        raise InvalidReturn(
            "RETURNED_NONE",
            "the handler returned None; return the output, a Response, or raise PluginError",
        )
    else:
        data, status = result, None
    response = plugin_pb2.InvokeResponse()
    if data is not None:
        _check_output_type(data, output_type)
        try:
            response.data = encode_payload(data)
        except (TypeError, ValueError) as err:
            raise InvalidReturn("UNENCODABLE_DATA", f"the output cannot be encoded: {err}") from err
    if status is not None:
        try:
            _with_error_summary(status).fill_proto(response.status)
        except (TypeError, ValueError) as err:
            problem = f"the status cannot be encoded: {err}"
            raise InvalidReturn("UNENCODABLE_STATUS", problem) from err
    violations = response_violations(response, cancel_requested=cancel_requested)
    if violations:
        first = violations[0]
        raise InvalidReturn(first.rule, "; ".join(v.detail for v in violations))
    return response


def _check_output_type(data: Any, output_type: PayloadType) -> None:
    wanted = isinstance(data, Mapping) if output_type is dict else isinstance(data, output_type)
    if not wanted:
        got = (
            data.DESCRIPTOR.full_name
            if isinstance(data, pb_message.Message)
            else type(data).__name__
        )
        expected = payload_type_name(output_type)
        if output_type is dict:
            expected = f"a dict ({expected})"
        raise InvalidReturn(
            "WRONG_RETURN_TYPE", f"the handler returned {got}; expected {expected} or a Response"
        )


def _with_error_summary(status: Task) -> Task:
    """Copies a FAILED task's error message, suggestion and code into its status fields."""
    error = status.error
    if error is None:
        return status
    return replace(
        status,
        status_message=status.status_message or error.message,
        status_suggestion=status.status_suggestion or error.suggestion,
        status_code=status.status_code or error.code,
    )


def failed(error: PluginError) -> plugin_pb2.InvokeResponse:
    """A FAILED answer carrying `error`, its summary copied into the task's status fields."""
    task = Task(state=TaskState.FAILED, error=error)
    return plugin_pb2.InvokeResponse(status=_with_error_summary(task).to_proto())


def from_plugin_error(error: PluginError) -> plugin_pb2.InvokeResponse:
    """The answer to a raised PluginError: FAILED with its envelope, if that envelope is valid."""
    try:
        response = failed(error)
    except (TypeError, ValueError) as err:
        problem = f"the PluginError cannot be encoded: {err}"
        return invalid_response(InvalidReturn("UNENCODABLE_ERROR", problem))
    violations = response_violations(response)
    if violations:
        return invalid_response(
            InvalidReturn(violations[0].rule, "; ".join(v.detail for v in violations))
        )
    return response


def from_exception(
    err: Exception, *, plugin_name: str, debug: bool, context: RequestContext | None = None
) -> plugin_pb2.InvokeResponse:
    """The answer to an unexpected exception: a safe FAILED; the details go to the log.

    The log line names the task (and check number), the exception with its message, and where
    it was raised; the traceback follows it. The envelope's `internal_message` carries the
    exception's type, message and traceback only when `debug` is on; otherwise just an incident
    id to find the log line by.
    """
    incident = uuid.uuid4().hex[:12]
    task = f"task {context.task_id or '-'} (check {context.check_number})" if context else "a call"
    summary = f"{describe_exception(err)} at {raised_at(err)}"
    logger.error(
        "plugin %s: %s raised %s (incident %s)",
        plugin_name,
        task,
        truncate(summary, _LOG_SUMMARY_MAX_BYTES),
        incident,
        exc_info=(type(err), err, err.__traceback__),
    )
    if debug:
        head = truncate(summary, limits.DETAIL_MAX_BYTES // 4)
        budget = limits.DETAIL_MAX_BYTES - len(head.encode("utf-8")) - 2
        tail = truncate_head("".join(traceback.format_exception(err)), budget)
        internal = f"{head}\n\n{tail}"
    else:
        internal = f"See the plugin server's log for incident {incident}."
    return failed(
        PluginError(
            message="The plugin failed unexpectedly.",
            suggestion="Try again later; if it keeps failing, tell the plugin's operator.",
            code=PLUGIN_INTERNAL_ERROR,
            rpc_code=grpc.StatusCode.INTERNAL,
            internal_message=truncate_head(internal, limits.DETAIL_MAX_BYTES),
            metadata={"incident": incident},
        )
    )


_LOG_SUMMARY_MAX_BYTES = 2048
"""The log line's exception summary is cut here; the full traceback follows it anyway."""


def describe_exception(err: BaseException) -> str:
    """ "KeyError: 'remote_job_id'": the exception's type and message (just the type if empty)."""
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def raised_at(err: BaseException) -> str:
    """Where `err` was raised: "path/to/file.py:42 in check_status" (its innermost frame)."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "an unknown place"
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def plugin_frame(err: BaseException) -> str:
    """The innermost frame of `err`'s traceback outside the asyncplugin package ("" if none):
    the plugin's own line that led to an error raised inside the SDK."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if not str(Path(frame.filename).resolve()).startswith(_PACKAGE_DIR):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return ""


def invalid_response(problem: InvalidReturn) -> plugin_pb2.InvokeResponse:
    """The answer sent instead of an invalid one: FAILED with code INVALID_PLUGIN_RESPONSE."""
    message = f"The plugin returned an invalid answer: {problem.problem}: {problem.detail}"
    return failed(
        PluginError(
            message=truncate(message, limits.TEXT_MAX_BYTES),
            suggestion="This is a bug in the plugin; report it to the plugin's author.",
            code=INVALID_PLUGIN_RESPONSE,
            rpc_code=grpc.StatusCode.INTERNAL,
            metadata={"rule": problem.problem},
        )
    )


def too_large(size: int, limit: int) -> plugin_pb2.InvokeResponse:
    """The answer sent instead of one of `size` bytes, over the server's `limit`."""
    return failed(
        PluginError(
            message=f"The plugin's answer is {size} bytes; the limit is {limit} bytes.",
            suggestion="Ask for less data at once, or raise the message size limit on both sides.",
            code=MESSAGE_TOO_LARGE,
            rpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED,
            metadata={"size_bytes": str(size), "limit_bytes": str(limit)},
        )
    )

"""The decoding chain both sides run on bytes from the far side, for the property tests and the
atheris harnesses in fuzz/: each `consume_*` function takes raw bytes and either returns (the
input was accepted, or refused with a named ProtocolViolation) or raises: any exception out of
it is a finding.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from asyncplugin.engine import CallKind, TaskRecord
from asyncplugin.engine.conversation import build_request, read_answer
from asyncplugin.engine.transport import classify_rpc_error
from asyncplugin.plugin import AsyncPlugin
from asyncplugin.plugin.dispatch import PluginDispatcher
from asyncplugin.protocol import (
    RULES,
    PluginError,
    ProtocolViolation,
    Task,
    TaskState,
    decode_payload,
    decode_request,
    decode_response,
    dict_to_struct,
    limits,
    status_to_error,
)
from asyncplugin.v1 import error_pb2


class _Echo(AsyncPlugin[dict[str, Any], dict[str, Any]]):
    """The SDK side of the properties: a dict plugin (its decode path is what is tested)."""

    async def run(self, request: Any) -> dict[str, Any]:
        return {}


DISPATCHER = PluginDispatcher(_Echo(), max_message_bytes=limits.MESSAGE_MAX_BYTES)


def _named(violation: ProtocolViolation) -> str:
    """The violation's rule, which must be one of RULES."""
    if violation.rule not in RULES:
        raise AssertionError(f"unnamed rule {violation.rule!r}") from violation
    return violation.rule


def consume_response(data: bytes, *, cancel_requested: bool = False) -> str:
    """Runs `data` through everything both sides do with an answer; returns the rule broken
    ("" if it was accepted). Any exception but ProtocolViolation fails the property."""
    try:
        response = decode_response(data, cancel_requested=cancel_requested)
    except ProtocolViolation as violation:
        return _named(violation)
    answer = read_answer(response)
    if response.HasField("status"):
        task = Task.from_proto(response.status)
        if task.remote_status_input is not None:
            assert isinstance(task.remote_status_input, dict)
        if response.status.HasField("error"):
            PluginError.from_proto(response.status.error)
    if answer.state is TaskState.RUNNING:
        # The engine records the answer and sends it back: the plugin must accept that request.
        record = TaskRecord(
            task_id="t",
            target="127.0.0.1:1",
            method="/asyncplugin.v1.PluginService/Invoke",
            state=TaskState.RUNNING,
            payload=dict_to_struct({}).SerializeToString(),
            idempotency_key="k",
            create_time=1_767_225_600.0,
            update_time=1_767_225_601.0,
            start_time=1_767_225_600.0,
            next_check_time=1_767_225_602.0,
            deadline=1_767_229_200.0,
            check_count=3,
            status=answer.status,
        )
        request = build_request(
            record, kind=CallKind.CHECK, check_number=4, max_retries=8, engine_name="e"
        )
        DISPATCHER.decode(request)
    return ""


def consume_request(data: bytes) -> str:
    """Runs `data` through the engine-side check and the SDK's decode; returns the rule."""
    first: str
    try:
        decode_request(data)
    except ProtocolViolation as violation:
        first = violation.rule
    else:
        first = ""
    try:
        DISPATCHER.decode(data)
    except ProtocolViolation as violation:
        return _named(violation)
    assert first == "", first  # the SDK never accepts what the shared rules refuse
    return ""


def consume_status(data: bytes) -> None:
    """A plugin's grpc-status-details-bin trailer, however broken, maps to an envelope."""
    try:
        status = status_pb2.Status.FromString(data)
    except DecodeError:
        status = None
    if status is not None:
        assert isinstance(status_to_error(status), error_pb2.Error)
    for code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE):
        if status is not None:
            data = status.SerializeToString()
            code = next((c for c in grpc.StatusCode if c.value[0] == status.code), code)
        err = classify_rpc_error(
            code,
            "details",
            [("grpc-status-details-bin", data)],
            target="127.0.0.1:1",
            method="/p.S/M",
        )
        assert isinstance(err.error, error_pb2.Error)


def consume_payload(data: bytes) -> None:
    """A dict plugin's payload bytes: a dict, or ValueError naming google.protobuf.Struct."""
    try:
        value = decode_payload(data, dict)
    except ValueError as err:
        refused = str(err)
    else:
        assert isinstance(value, dict)
        return
    assert "google.protobuf.Struct" in refused


_DETAIL_TYPES = (
    "type.googleapis.com/asyncplugin.v1.Error",
    "type.googleapis.com/google.rpc.ErrorInfo",
    "type.googleapis.com/google.rpc.Help",
    "type.googleapis.com/google.rpc.DebugInfo",
)


def consume_trailer(data: bytes) -> None:
    """`data` as a whole grpc-status-details-bin trailer, and as the packed value of each detail
    type the engine reads (so the fuzzer reaches the unpacking without forging a Status)."""
    consume_status(data)
    status = status_pb2.Status(code=9, message="refused")
    for url in _DETAIL_TYPES:
        status.details.add(type_url=url, value=data)
    consume_status(status.SerializeToString())

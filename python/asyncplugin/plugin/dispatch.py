"""One RPC, bytes in and bytes out: decode the request, call the plugin, encode a valid answer.

The handler is registered with identity (de)serializers so the SDK controls decoding: a typed
request (payload message at field 1) parses as the generic InvokeRequest because the two are
wire-identical, and a payload that does not decode as the plugin's input type is answered with
INVALID_ARGUMENT naming the expected type, not with a crash; one that decodes but does not
validate as the plugin's pydantic input model is INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import inspect
import types
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import message as pb_message
from google.protobuf import struct_pb2
from grpc_status import rpc_status

from asyncplugin.protocol import (
    PluginError,
    ProtocolViolation,
    Request,
    Rule,
    decode_payload,
    error_to_status,
    limits,
    payload_type_name,
    request_violations,
)
from asyncplugin.protocol.envelope import request_from_wire
from asyncplugin.protocol.methods import split_method
from asyncplugin.protocol.payload import PayloadValidationError, parse_payload
from asyncplugin.protocol.text import truncate
from asyncplugin.v1 import error_pb2, plugin_pb2

from . import normalize
from .base import AsyncPlugin
from .cancel import CANCEL_NOT_HANDLED, cancel_not_handled, ignored_cancel
from .handlers import NEVER_AWAITABLE, call_handler, executor_var, runs_on_loop
from .loading import check_plugin_class

INVALID_PAYLOAD = "INVALID_PAYLOAD"
"""Code of the INVALID_ARGUMENT refusal of a payload that does not validate as the plugin's
pydantic input model; `metadata["field"]` names the first offending field."""

if TYPE_CHECKING:
    from .telemetry import PluginTelemetry

_Coroutine = types.CoroutineType


class PluginDispatcher:
    """Answers the calls to one plugin's RPC; the server registers `handle` for its method."""

    def __init__(
        self,
        plugin: AsyncPlugin[Any, Any],
        *,
        debug: bool = False,
        max_message_bytes: int,
        executor: Executor | None = None,
        telemetry: PluginTelemetry | None = None,
    ) -> None:
        kind = type(plugin)
        check_plugin_class(kind)
        self.service_name, self.method_name = split_method(
            kind.rpc_method, what=f"{kind.__name__}.rpc_method"
        )
        self._plugin = plugin
        # The base class's `run` only routes on the request's flags: the dispatcher routes the
        # same way itself and saves a coroutine and a handler call per call.
        self._routes_by_flags = kind.run is AsyncPlugin.run and "run" not in getattr(
            plugin, "__dict__", {}
        )
        self._debug = debug
        self._max_message_bytes = max_message_bytes
        self._executor = executor
        self._telemetry = telemetry

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler[bytes, bytes]]:
        """The plugin's method by name, with raw bytes in and out (`handle`)."""
        return {self.method_name: grpc.unary_unary_rpc_method_handler(self.handle)}

    def generic_handler(self) -> grpc.GenericRpcHandler:
        """The grpc handler serving the plugin's method with raw bytes in and out."""
        return grpc.method_handlers_generic_handler(self.service_name, self.method_handlers())

    async def handle(self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        """Answers one call: INVALID_ARGUMENT for a bad request, otherwise an in-band answer."""
        try:
            request = self.decode(data)
        except ProtocolViolation as violation:
            await context.abort_with_status(
                _invalid_argument(violation.rule, str(violation), field=violation.field)
            )
        except PayloadValidationError as invalid:
            await context.abort_with_status(
                _invalid_argument(INVALID_PAYLOAD, str(invalid), field=invalid.field, rule="")
            )
        telemetry = self._telemetry
        if telemetry is None:
            response = await self.answer(request)
        else:
            token = telemetry.started(request)
            response = await self.answer(request)
            telemetry.answered(response, token)
        return response.SerializeToString(deterministic=True)

    def decode(self, data: bytes) -> Request[Any]:
        """Decodes and checks a request's bytes.

        Raises:
            ProtocolViolation: the envelope breaks a rule, or data is not the input type.
            PayloadValidationError: data does not validate as the plugin's pydantic input model.
        """
        envelope = plugin_pb2.InvokeRequest()
        try:
            envelope.ParseFromString(data)
        except (pb_message.DecodeError, RecursionError) as err:
            raise ProtocolViolation(
                Rule.MALFORMED_MESSAGE, f"the request is not a valid envelope: {err}"
            ) from err
        violations = request_violations(envelope)
        if violations:
            raise violations[0]
        input_type = self._plugin.input_type
        payload: Any = None
        wire_data: struct_pb2.Struct | None = None
        try:
            if input_type is dict:  # parsed (so checked) now, read as a dict on first use
                wire_data = parse_payload(envelope.data, dict, model=False)  # type: ignore[assignment]
            else:
                payload = decode_payload(envelope.data, input_type)
        except PayloadValidationError:
            raise
        except ValueError as err:
            raise ProtocolViolation(
                Rule.MALFORMED_MESSAGE,
                f"data must be a {payload_type_name(input_type)} ({self._plugin.name} takes "
                f"that type): {err}",
                field="data",
            ) from err
        # The status, context and a dict payload are decoded when first read (validated above).
        return request_from_wire(
            data=payload,
            wire_data=wire_data,
            context=envelope.context,
            status=envelope.status if envelope.HasField("status") else None,
            is_status_check=envelope.is_status_check,
            cancel_requested=envelope.cancel_requested,
        )

    async def answer(self, request: Request[Any]) -> plugin_pb2.InvokeResponse:
        """Runs the plugin on a decoded request and returns a valid answer, whatever it did."""
        plugin = self._plugin
        token = executor_var.set(self._executor)
        try:
            if not self._routes_by_flags:
                handler = plugin.run
            elif request.cancel_requested:
                handler = plugin.cancel_work
            elif request.is_status_check:
                handler = plugin.check_status
            else:
                handler = plugin.initiate_work
            if runs_on_loop(handler):  # `call_handler`'s own path, without its coroutine
                result = handler(request)
                while type(result) is _Coroutine or (
                    type(result) not in NEVER_AWAITABLE and inspect.isawaitable(result)
                ):
                    result = await result
            else:
                result = await call_handler(handler, request)
            if request.cancel_requested and ignored_cancel(result):
                normalize.logger.warning(
                    "plugin %s answered the cancel request for task %s as a status check; "
                    "answering CANCELLED with code %s (the remote work was not stopped)",
                    plugin.name,
                    request.context.task_id or "-",
                    CANCEL_NOT_HANDLED,
                )
                result = cancel_not_handled()
            response = normalize.build_response(
                result, output_type=plugin.output_type, cancel_requested=request.cancel_requested
            )
        except PluginError as err:
            normalize.logger.info(
                "plugin %s answered FAILED for task %s: %r",
                plugin.name,
                request.context.task_id or "-",
                err,
            )
            response = normalize.from_plugin_error(err)
        except normalize.InvalidReturn as problem:
            where = normalize.plugin_frame(problem)
            normalize.logger.error(
                "plugin %s returned an invalid answer for task %s: %s%s",
                plugin.name,
                request.context.task_id or "-",
                problem,
                f" (at {where})" if where else "",
            )
            response = normalize.invalid_response(problem)
        except Exception as err:
            response = normalize.from_exception(
                err, plugin_name=plugin.name, debug=self._debug, context=request.context
            )
        finally:
            executor_var.reset(token)
        size = response.ByteSize()
        if size > self._max_message_bytes:
            normalize.logger.error("plugin %s answer is %d bytes: too large", plugin.name, size)
            response = normalize.too_large(size, self._max_message_bytes)
        return response


def _invalid_argument(
    code: str, message: str, *, field: str, rule: str | None = None
) -> grpc.Status:
    """INVALID_ARGUMENT whose google.rpc.Status details carry the Error envelope, the field and
    the protocol rule broken (`rule` defaults to `code`; "" for a request breaking no rule)."""
    rule = code if rule is None else rule
    metadata = {"rule": rule, "field": field} if rule else {"field": field}
    error = error_pb2.Error(
        message=truncate(message, limits.TEXT_MAX_BYTES),
        code=code,
        rpc_code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
        metadata=metadata,
    )
    status: grpc.Status = rpc_status.to_status(error_to_status(error))
    return status

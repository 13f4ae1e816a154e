"""The asyncplugin v1 protocol in Python: values, rules, and conversions shared by both sides.

The plugin SDK (`asyncplugin.plugin`) and the engine (`asyncplugin.engine`) never import each
other; they meet here and on the wire.
"""

from __future__ import annotations

from . import limits
from .envelope import Request, RequestContext, Response
from .errors import AsyncPluginError, PluginError, ProtocolViolation
from .methods import GENERIC_METHOD
from .payload import decode_payload, encode_payload, payload_type_name
from .rpc_status import error_to_status, status_to_error
from .rules import RULES, Rule
from .structs import dict_to_struct, struct_depth, struct_to_dict
from .task import Progress, Task, TaskState, datetime_to_timestamp, timestamp_to_datetime
from .validate import (
    check_request,
    check_response,
    decode_request,
    decode_response,
    request_violations,
    response_violations,
    task_violations,
)

__all__ = [
    "GENERIC_METHOD",
    "RULES",
    "AsyncPluginError",
    "PluginError",
    "Progress",
    "ProtocolViolation",
    "Request",
    "RequestContext",
    "Response",
    "Rule",
    "Task",
    "TaskState",
    "check_request",
    "check_response",
    "datetime_to_timestamp",
    "decode_payload",
    "decode_request",
    "decode_response",
    "dict_to_struct",
    "encode_payload",
    "error_to_status",
    "limits",
    "payload_type_name",
    "request_violations",
    "response_violations",
    "status_to_error",
    "struct_depth",
    "struct_to_dict",
    "task_violations",
    "timestamp_to_datetime",
]

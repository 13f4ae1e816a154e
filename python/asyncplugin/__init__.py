"""asyncplugin: a protobuf/gRPC protocol and toolkit for asynchronous plugins.

A plugin method answers at once (data: SUCCEEDED) or with a RUNNING Task carrying
`remote_status_input`; the engine then calls the same method with `is_status_check=True` at
growing intervals until the plugin answers with data or an error.
"""

from __future__ import annotations

from .plugin import AsyncPlugin, BindError, PluginServer, serve, serve_in_process
from .protocol import (
    AsyncPluginError,
    PluginError,
    Progress,
    ProtocolViolation,
    Request,
    RequestContext,
    Response,
    Task,
    TaskState,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncPlugin",
    "AsyncPluginError",
    "BindError",
    "PluginError",
    "PluginServer",
    "Progress",
    "ProtocolViolation",
    "Request",
    "RequestContext",
    "Response",
    "Task",
    "TaskState",
    "__version__",
    "serve",
    "serve_in_process",
]

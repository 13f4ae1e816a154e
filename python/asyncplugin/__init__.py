"""asyncplugin: a protobuf/gRPC protocol and toolkit for asynchronous plugins.

A plugin method answers at once (data: SUCCEEDED) or with a RUNNING Task carrying
`remote_status_input`; the engine then calls the same method with `is_status_check=True` at
growing intervals until the plugin answers with data or an error.
"""

from __future__ import annotations

from .engine import (
    BearerTokens,
    ChannelSecurity,
    CheckRecord,
    Engine,
    EngineTelemetry,
    FakeClock,
    GrpcTransport,
    MemoryStore,
    PollingPolicy,
    SqliteStore,
    SyncEngine,
    TaskNotFound,
    TaskOptions,
    TaskRecord,
    TransportRetryPolicy,
    WaitTimeout,
)
from .plugin import (
    AsyncPlugin,
    BindError,
    PluginServer,
    PluginTelemetry,
    ServerSecurity,
    serve,
    serve_in_process,
)
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
    "BearerTokens",
    "BindError",
    "ChannelSecurity",
    "CheckRecord",
    "Engine",
    "EngineTelemetry",
    "FakeClock",
    "GrpcTransport",
    "MemoryStore",
    "PluginError",
    "PluginServer",
    "PluginTelemetry",
    "PollingPolicy",
    "Progress",
    "ProtocolViolation",
    "Request",
    "RequestContext",
    "Response",
    "ServerSecurity",
    "SqliteStore",
    "SyncEngine",
    "Task",
    "TaskNotFound",
    "TaskOptions",
    "TaskRecord",
    "TaskState",
    "TransportRetryPolicy",
    "WaitTimeout",
    "__version__",
    "serve",
    "serve_in_process",
]

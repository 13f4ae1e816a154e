"""The reference engine: submits work to asynchronous plugins and polls it to the end.

Layers inside (imports point down): `engine` (the API: `Engine`, whose class is layered as
`engine` over `control` over `submission` over `dispatch`) and `sync` (a blocking facade) over
`steps` (one task's due call and its recorded outcome) over `conversation` (requests and answers,
pure), `policy` (backoff, pure), `scheduler` (one heap), `clock`, `transport` (the gRPC edge)
and `store` (the truth); `telemetry` (traces, metrics) hangs off the transport and the change
hooks; `leasing` runs an engine as one of several workers on a shared store. The engine never
imports the plugin SDK: the two sides meet only in `asyncplugin.protocol` and on the wire.
"""

from __future__ import annotations

from .clock import Clock, FakeClock, SystemClock
from .completion import CompletionIssuer
from .credentials import BearerTokens, ChannelSecurity
from .engine import ENGINE_NAME, Engine, Payload
from .errors import (
    AmbiguousTaskId,
    EngineClosed,
    EngineCode,
    EngineError,
    LeaseLost,
    RequestIdConflict,
    StoreError,
    TaskNotFound,
    TaskStateError,
    WaitTimeout,
)
from .policy import PollingPolicy, TransportRetryPolicy, next_interval, retry_delay
from .records import CallKind, CheckOutcome, CheckRecord, TaskOptions, TaskRecord, TaskUpdate
from .store import (
    LeaseTerms,
    MemoryStore,
    SharedStore,
    SqliteStore,
    TaskCursor,
    TaskFilter,
    TaskStore,
    open_store,
)
from .sync import SyncEngine
from .telemetry import EngineTelemetry
from .transport import GrpcTransport, Transport, TransportError

__all__ = [
    "ENGINE_NAME",
    "AmbiguousTaskId",
    "BearerTokens",
    "CallKind",
    "ChannelSecurity",
    "CheckOutcome",
    "CheckRecord",
    "Clock",
    "CompletionIssuer",
    "Engine",
    "EngineClosed",
    "EngineCode",
    "EngineError",
    "EngineTelemetry",
    "FakeClock",
    "GrpcTransport",
    "LeaseLost",
    "LeaseTerms",
    "MemoryStore",
    "Payload",
    "PollingPolicy",
    "RequestIdConflict",
    "SharedStore",
    "SqliteStore",
    "StoreError",
    "SyncEngine",
    "SystemClock",
    "TaskCursor",
    "TaskFilter",
    "TaskNotFound",
    "TaskOptions",
    "TaskRecord",
    "TaskStateError",
    "TaskStore",
    "TaskUpdate",
    "Transport",
    "TransportError",
    "TransportRetryPolicy",
    "WaitTimeout",
    "next_interval",
    "open_store",
    "retry_delay",
]

"""The engine as a service: the daemon's gRPC API (EngineService, google.longrunning) and its
Python client.

Layers: this package sits over `asyncplugin.engine` (the task rules live there: submit, cancel,
complete, update) and under `asyncplugin.cli`. `convert` turns the engine's records into the
service's messages and needs no running daemon, so a reader of a store file shows tasks exactly
as the daemon does. `client` is the asyncio `EngineClient` and its blocking `SyncEngineClient`.
`console`: a web console over a running engine (tasks live, one task's check timeline, plugins).
"""

from __future__ import annotations

from .client import EngineClient, EngineServiceError, SyncEngineClient
from .convert import (
    check_to_proto,
    operation_metadata,
    operation_name,
    policy_overrides,
    task_to_proto,
)

__all__ = [
    "EngineClient",
    "EngineServiceError",
    "SyncEngineClient",
    "check_to_proto",
    "operation_metadata",
    "operation_name",
    "policy_overrides",
    "task_to_proto",
]

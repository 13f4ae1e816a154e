"""The engine as a service: the daemon's gRPC API (EngineService, google.longrunning) and its
Python client.

Layers: this package sits over `asyncplugin.engine` (the task rules live there: submit, cancel,
complete, update) and under `asyncplugin.cli`. Modules, one job each:
  - `convert`: the engine's records as the service's messages; needs no running daemon, so a
    reader of a store file shows tasks exactly as the daemon does;
  - `client`: the asyncio `EngineClient`; `sync_client`: its blocking `SyncEngineClient`;
  - `requests`: checks of what clients send; `errors`: refusals as gRPC statuses;
  - `servicer`: EngineService; `operations`: google.longrunning.Operations;
  - `tokens`: signed completion tokens and their key file;
  - `server`: the daemon's gRPC server (health, reflection, TLS, bearer tokens, graceful stop);
  - `console`: a web console over a running engine (tasks live, one task's check timeline,
    plugins).
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
from .operations import OperationsServicer, to_operation
from .requests import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Limits
from .server import EngineServer
from .servicer import EngineServicer
from .tokens import CompletionKey, CompletionTokens, TokenRejected, new_key_line, read_key_file

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "CompletionKey",
    "CompletionTokens",
    "EngineClient",
    "EngineServer",
    "EngineServiceError",
    "EngineServicer",
    "Limits",
    "OperationsServicer",
    "SyncEngineClient",
    "TokenRejected",
    "check_to_proto",
    "new_key_line",
    "operation_metadata",
    "operation_name",
    "policy_overrides",
    "read_key_file",
    "task_to_proto",
    "to_operation",
]

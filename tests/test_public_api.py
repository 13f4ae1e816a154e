"""The public surface changes only on purpose."""

from __future__ import annotations

import asyncplugin
import asyncplugin.protocol


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_top_level_exports_are_pinned() -> None:
    """`asyncplugin.__all__` is exactly this sorted list."""
    assert asyncplugin.__all__ == sorted(asyncplugin.__all__, key=_isort_key)
    assert set(asyncplugin.__all__) == {
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
    }
    for name in asyncplugin.__all__:
        assert hasattr(asyncplugin, name)


def test_protocol_exports_are_sorted_and_present() -> None:
    """`asyncplugin.protocol.__all__` is sorted and every name resolves."""
    names = asyncplugin.protocol.__all__
    assert names == sorted(names, key=_isort_key)
    for name in names:
        assert hasattr(asyncplugin.protocol, name)

"""The public surface changes only on purpose."""

from __future__ import annotations

import asyncplugin
import asyncplugin.protocol


def test_top_level_exports_are_pinned() -> None:
    """`asyncplugin.__all__` is exactly this sorted list."""
    assert asyncplugin.__all__ == sorted(asyncplugin.__all__)
    assert set(asyncplugin.__all__) == {
        "AsyncPluginError",
        "PluginError",
        "Progress",
        "ProtocolViolation",
        "Request",
        "RequestContext",
        "Response",
        "Task",
        "TaskState",
        "__version__",
    }
    for name in asyncplugin.__all__:
        assert hasattr(asyncplugin, name)


def test_protocol_exports_are_sorted_and_present() -> None:
    """`asyncplugin.protocol.__all__` is sorted and every name resolves."""
    names = asyncplugin.protocol.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(asyncplugin.protocol, name)

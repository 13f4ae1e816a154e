"""Task stores: the interface, an in-memory store, the embedded SQLite default, and
`open_store`, which picks one from a path or URL."""

from __future__ import annotations

from .base import TaskStore
from .memory import MemoryStore
from .query import TaskCursor, TaskFilter
from .spec import DEFAULT_STORE, open_store, store_path
from .sqlite import SCHEMA_VERSION, SqliteStore

__all__ = [
    "DEFAULT_STORE",
    "SCHEMA_VERSION",
    "MemoryStore",
    "SqliteStore",
    "TaskCursor",
    "TaskFilter",
    "TaskStore",
    "open_store",
    "store_path",
]

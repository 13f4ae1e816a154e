"""Task stores: the interface, an in-memory store, and the embedded SQLite default."""

from __future__ import annotations

from .base import TaskStore
from .memory import MemoryStore
from .sqlite import SCHEMA_VERSION, SqliteStore

__all__ = ["SCHEMA_VERSION", "MemoryStore", "SqliteStore", "TaskStore"]

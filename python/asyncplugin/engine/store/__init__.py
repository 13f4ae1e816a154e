"""Task stores: the interface, an in-memory store, the embedded SQLite default, PostgreSQL for
several engine workers (`postgres`, needs the `postgres` extra), and `open_store`, which picks
one from a path or URL."""

from __future__ import annotations

from .base import Lease, LeaseTerms, SharedStore, TaskStore
from .memory import MemoryStore
from .query import TaskCursor, TaskFilter
from .spec import DEFAULT_STORE, is_postgres_url, open_store, store_path
from .sqlite import SCHEMA_VERSION, SqliteStore

__all__ = [
    "DEFAULT_STORE",
    "SCHEMA_VERSION",
    "Lease",
    "LeaseTerms",
    "MemoryStore",
    "SharedStore",
    "SqliteStore",
    "TaskCursor",
    "TaskFilter",
    "TaskStore",
    "is_postgres_url",
    "open_store",
    "store_path",
]

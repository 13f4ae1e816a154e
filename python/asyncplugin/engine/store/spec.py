"""Choosing a task store from one string: a file path or a URL (`--store` on the command line).

    open_store("tasks.sqlite3")                  # SQLite file
    open_store("sqlite:///var/lib/ap/tasks.db")  # the same, as a URL
    open_store("memory:")                        # in memory (tests, throwaway daemons)
    open_store("postgresql://app@db/tasks")      # PostgreSQL, shared by several engine workers

Every place that turns a user's `--store` into a TaskStore goes through `open_store`, so a new
kind of store is added here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from ..errors import StoreError
from .base import LeaseTerms, TaskStore
from .memory import MemoryStore
from .sqlite import SqliteStore

__all__ = ["DEFAULT_STORE", "POSTGRES_SCHEMES", "is_postgres_url", "open_store", "store_path"]

DEFAULT_STORE: Final = "asyncplugin.sqlite3"
"""The store used when none is named: an SQLite file in the current folder."""

_SQLITE_SCHEMES: Final = ("sqlite:///", "sqlite://", "sqlite:")
POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
"""URL prefixes that select the PostgreSQL store."""


def is_postgres_url(spec: str) -> bool:
    """True if `spec` names a PostgreSQL database."""
    return spec.strip().lower().startswith(POSTGRES_SCHEMES)


def store_path(spec: str) -> Path | None:
    """The file of an SQLite store spec, or None for a store that is not a file.

    Raises:
        ValueError: the spec is empty or names a kind of store this version does not know.
    """
    text = spec.strip()
    if not text:
        raise ValueError("the store is empty: give a file path or a URL such as sqlite:///FILE")
    if text == "memory:":
        return None
    for scheme in _SQLITE_SCHEMES:
        if text.startswith(scheme):
            rest = text[len(scheme) :]
            if not rest:
                raise ValueError(f"store URL {spec!r} names no file (use sqlite:///FILE)")
            return Path(rest)
    scheme, sep, _ = text.partition("://")
    if sep and scheme.isidentifier():
        raise ValueError(
            f"store URL {spec!r}: unknown kind {scheme!r} (this version knows SQLite files, "
            "memory: and postgresql://)"
        )
    return Path(text)


def open_store(spec: str, *, read_only: bool = False, terms: LeaseTerms | None = None) -> TaskStore:
    """The store named by `spec` (a path, `sqlite:///PATH`, `memory:` or a
    `postgresql://user@host/db` URL), not yet opened.

    With `read_only`, the store is opened for reading only, as `asyncplugin tasks` does: it
    must already exist, and nothing is created, migrated or written (`SqliteStore(read_only=)`;
    a PostgreSQL schema must be at this version). `terms` are a PostgreSQL worker's lease terms.

    Raises:
        ValueError: a malformed or unknown spec, or (read-only) no store at that path.
        StoreError: a PostgreSQL URL while the `postgres` extra (psycopg) is not installed.
    """
    if is_postgres_url(spec):
        try:
            from .postgres import PostgresStore
        except ImportError as err:
            raise StoreError(
                f"the PostgreSQL store needs psycopg ({err}); install it with "
                "pip install 'asyncplugin[postgres]'"
            ) from None
        return PostgresStore(spec.strip(), read_only=read_only, terms=terms)
    path = store_path(spec)
    if path is None:
        if read_only:
            raise ValueError("a memory: store has nothing to read")
        return MemoryStore()
    if read_only and not path.exists():
        raise ValueError(f"no task store at {path}")
    return SqliteStore(path, read_only=read_only)

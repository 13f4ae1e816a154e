"""`asyncplugin store migrate URL|FILE`: bring a task store's schema up to this version.

Engine workers apply pending migrations themselves when they start (in one transaction, under a
lock, so workers starting together apply each step once). Run this before rolling out a new
version to a fleet instead, so no worker starts on a half-upgraded fleet, or to check a database
from a deploy job: it exits non-zero, in one line, when the database cannot be reached or holds a
schema newer than this asyncplugin.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from asyncplugin.engine import StoreError
from asyncplugin.engine.store import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from asyncplugin.engine.store import SqliteStore, is_postgres_url, open_store

from .common import store_name


def register(subparsers: Any) -> None:
    """Adds the `store` subcommand with `migrate`."""
    parser = subparsers.add_parser("store", help="manage a task store (schema migrations)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate",
        help="apply pending schema migrations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument("store", metavar="URL|FILE", help="postgresql:// URL or SQLite file")
    migrate.set_defaults(handler=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    """Handler for `store migrate`: prints the versions before and after."""
    name = store_name(args.store)
    if is_postgres_url(args.store):
        from asyncplugin.engine.store.postgres import PostgresStore

        store = open_store(args.store)
        assert isinstance(store, PostgresStore)
        before, after = asyncio.run(store.migrate())
    else:
        before = _sqlite_version(Path(args.store))
        sqlite = SqliteStore(args.store)

        async def run() -> None:
            await sqlite.open()  # migrates
            await sqlite.close()

        asyncio.run(run())
        after = SQLITE_SCHEMA_VERSION
    if before == after:
        print(f"{name}: schema is at version {after}, nothing to do")
    else:
        print(f"{name}: schema migrated from version {before} to {after}")
    return 0


def _sqlite_version(path: Path) -> int:
    """The file's schema version (0 for a missing or empty file)."""
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as err:
        raise StoreError(f"{path}: not a usable task store: {err}") from err

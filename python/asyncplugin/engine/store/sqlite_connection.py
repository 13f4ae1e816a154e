"""Opening the SQLite store's file (an engine's or a reader's), its transactions, its errors.

An engine's connection: the file created with mode 0600 if missing, its schema version checked
before anything is changed (a newer schema is refused, the file left as it was), WAL mode, the
`synchronous` setting, foreign keys on, the schema created or migrated, and the file proved
writable. A reader's: `mode=ro`, never creating, migrating or changing anything (see
`SqliteStore`). Every SQLite error becomes a StoreError naming the file, the SQLite error code
and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path
from typing import Final

from ..errors import StoreError
from .sqlite_schema import SCHEMA_VERSION, migrate, refuse_newer

__all__ = [
    "Transaction",
    "describe",
    "explain",
    "flock_soon",
    "open_reader",
    "open_writer",
    "read_note",
]


def open_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    """An engine's connection to `path` (created if missing), its schema current."""
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as err:
            cause = f"{err.strerror}: {err.filename}" if err.filename else str(err)
            raise StoreError(
                f"{path}: cannot create the task store: {cause}; check that its "
                "folder exists and can be written"
            ) from err
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as err:
        raise StoreError(explain(f"{path}: cannot open the task store: {err}", err)) from err
    try:
        db.execute("PRAGMA busy_timeout = 5000")
        refuse_newer(db, path)  # before WAL mode: a newer file is left exactly as it was
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot enable WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db, path)
    except sqlite3.Error as err:
        db.close()
        raise StoreError(explain(f"{path}: not a usable task store: {err}", err)) from err
    except BaseException:
        db.close()
        raise
    try:
        _check_writable(db)
    except sqlite3.Error as err:
        db.close()
        raise StoreError(describe(path, "write to the task store", err)) from err
    except BaseException:
        db.close()
        raise
    return db


def open_reader(path: Path) -> sqlite3.Connection:
    """A reader's `mode=ro` connection to an existing store of the current schema version."""
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "the file does not exist"
        raise StoreError(f"{path}: no task store here ({what})")
    try:
        db, version = _connect_read_only(path)
    except sqlite3.Error as err:
        raise StoreError(explain(f"{path}: not a usable task store: {err}", err)) from err
    problem = ""
    if version == 0:
        problem = "no task store schema (an engine or 'asyncplugin invoke' creates it)"
    elif version > SCHEMA_VERSION:
        problem = (
            f"schema version {version} was written by a newer asyncplugin (this one reads "
            f"up to {SCHEMA_VERSION})"
        )
    elif version < SCHEMA_VERSION:
        problem = (
            f"schema version {version} is older than this asyncplugin's "
            f"({SCHEMA_VERSION}); a reader does not migrate it: start an engine on it once"
        )
    if problem:
        db.close()
        raise StoreError(f"{path}: not a task store: {problem}")
    return db


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is not None:
            self._rollback()
            return
        try:
            self._db.execute("COMMIT")
        except BaseException:
            # A COMMIT that fails (a full disk) may leave the transaction open: end it, so the
            # connection is not stuck and the next write starts clean.
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")


_HINTS: Final = {
    "SQLITE_FULL": "the disk (or the database's size limit) is full; free space, then start "
    "the engine again on the same file",
    "SQLITE_READONLY": "the file or its folder is read-only; make it writable, then start the "
    "engine again on the same file",
    "SQLITE_IOERR": "the disk failed a read or write; check the device and free space",
    "SQLITE_CORRUPT": "the file is damaged; restore it from a backup",
    "SQLITE_NOTADB": "the file is not an SQLite database",
    "SQLITE_CANTOPEN": "the file cannot be opened; check that its folder exists and that the "
    "file and its folder can be read (and written, by an engine)",
}


def describe(path: Path, action: str, err: sqlite3.Error) -> str:
    """ "<file>: cannot <action>: <sqlite message> (<code>); <what to do>"."""
    return explain(f"{path}: cannot {action}: {err}", err)


def explain(text: str, err: sqlite3.Error) -> str:
    """`text` with the SQLite error code and what to do about it: "<text> (<code>); <hint>"."""
    name = str(getattr(err, "sqlite_errorname", "") or "")
    hint = next((hint for code, hint in _HINTS.items() if name.startswith(code)), "")
    if name:
        text += f" ({name})"
    return f"{text}; {hint}" if hint else text


async def flock_soon(fd: int, *, attempts: int = 10, pause_s: float = 0.01) -> None:
    """Takes the exclusive lock, retrying briefly: a reader's `holder()` holds a shared lock
    for an instant. Raises BlockingIOError when another engine holds it."""
    for _ in range(attempts - 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(pause_s)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def read_note(fd: int) -> str:
    """The first line another engine announced in the lock file ("" if none or unreadable)."""
    try:
        return os.pread(fd, 512, 0).decode("utf-8", "replace").split("\n", 1)[0].strip()
    except OSError:
        return ""


def _check_writable(db: sqlite3.Connection) -> None:
    """Writes the schema version again and rolls it back: SQLite opens a file it may not write
    read-only without a word, and would otherwise fail only at the first real write, after
    calls were sent. Nothing reaches the file."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(f"PRAGMA user_version = {version}")
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")


def _connect_read_only(path: Path) -> tuple[sqlite3.Connection, int]:
    """A `mode=ro` connection to `path` and the schema version it reads."""
    uri = path.resolve().as_uri()
    try:
        return _read_only_at(f"{uri}?mode=ro")
    except sqlite3.OperationalError as err:
        # SQLite reads a WAL database through its -shm index, which it cannot create in a
        # read-only folder. Without a -wal file nobody can be writing there (a writer would
        # need one), so the file is safe to read as immutable.
        name = str(getattr(err, "sqlite_errorname", "") or "")
        wal = path.with_name(path.name + "-wal")
        if name not in ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN") or wal.exists():
            raise
        return _read_only_at(f"{uri}?mode=ro&immutable=1")


def _read_only_at(uri: str) -> tuple[sqlite3.Connection, int]:
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA query_only = ON")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    except BaseException:
        db.close()
        raise
    return db, version

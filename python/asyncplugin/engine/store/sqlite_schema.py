"""The SQLite task store's schema and its migrations (row <-> record conversions: `rows.py`).

Schema (version 3):
    tasks(task_id PK, target, method, state INT, payload BLOB, idempotency_key, options JSON,
          create_time, update_time, start_time, end_time, next_check_time, deadline REAL,
          check_count, retries INT, status BLOB (last Task), result BLOB, error BLOB (Error),
          labels JSON, request_id (unique when not ''), revision INT, last_check INT)
    checks(id PK autoincrement, task_id, kind, check_number, started_time, finished_time,
           outcome, grpc_code, message, interval_s, reason, next_check_time, revision INT,
           prev INT)
Times are epoch seconds (REAL); protobuf values are stored as their encoded bytes. Version 2
added labels, request ids and revisions (for the engine service's filters, idempotent submits
and watch resumption); an engine opening a version 1 file migrates it in place (its tasks and
checks get revision 1).

Version 3 links each task's history instead of indexing it: `tasks.last_check` is the id of the
task's newest history entry (NULL: none yet), and each entry's `prev` the id of the one before
it (NULL: the first). Version 2 found a task's history through an index on `checks (task_id,
id)`, and keeping it was most of what a status check cost SQLite: each new entry landed on a
random page of that index, dirtied and written to the WAL at every commit. Now an entry is
appended at the end of `checks` (the pages a commit writes are the newest few) and its link is
one more column of the task row the same write updates anyway; a history is read by following
the links from the task row (one primary-key lookup per entry). The migration from version 2
links every recorded entry to its task's previous one (by id, the order they were recorded
in) and drops the index.

The schema is versioned by `PRAGMA user_version`: `_MIGRATIONS[n]` upgrades version n to n + 1,
and `migrate` applies them in order, each in its own transaction (so a migration that fails
midway leaves the file at the version before it, with everything it held).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from ..errors import StoreError
from .rows import check_from_row, check_row, progress_row, task_from_row, task_row

__all__ = [
    "CHECK_COLUMNS",
    "CHECK_COUNT",
    "PROGRESS_COLUMNS",
    "SCHEMA_VERSION",
    "TASK_COLUMNS",
    "TASK_COUNT",
    "check_from_row",
    "check_row",
    "marks",
    "migrate",
    "progress_row",
    "refuse_newer",
    "task_from_row",
    "task_row",
]

SCHEMA_VERSION: Final = 3

_SCHEMA_V1: Final = """
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    method TEXT NOT NULL,
    state INTEGER NOT NULL,
    payload BLOB NOT NULL,
    idempotency_key TEXT NOT NULL,
    options TEXT NOT NULL,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    next_check_time REAL,
    deadline REAL,
    check_count INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    status BLOB,
    result BLOB,
    error BLOB
);
CREATE INDEX tasks_by_state ON tasks (state, create_time);
CREATE INDEX tasks_by_time ON tasks (create_time);
CREATE TABLE checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks (task_id),
    kind TEXT NOT NULL,
    check_number INTEGER NOT NULL,
    started_time REAL NOT NULL,
    finished_time REAL NOT NULL,
    outcome TEXT NOT NULL,
    grpc_code TEXT NOT NULL,
    message TEXT NOT NULL,
    interval_s REAL,
    reason TEXT NOT NULL,
    next_check_time REAL
);
CREATE INDEX checks_by_task ON checks (task_id, id);
"""

_SCHEMA_V2: Final = """
ALTER TABLE tasks ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
ALTER TABLE checks ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
CREATE UNIQUE INDEX tasks_by_request ON tasks (request_id) WHERE request_id != '';
CREATE INDEX tasks_by_order ON tasks (create_time, task_id);
CREATE INDEX tasks_by_target ON tasks (target, create_time);
"""

_SCHEMA_V3: Final = """
ALTER TABLE checks ADD COLUMN prev INTEGER;
UPDATE checks SET prev = (
    SELECT max(earlier.id) FROM checks AS earlier
    WHERE earlier.task_id = checks.task_id AND earlier.id < checks.id
);
ALTER TABLE tasks ADD COLUMN last_check INTEGER;
UPDATE tasks SET last_check = (SELECT max(id) FROM checks WHERE checks.task_id = tasks.task_id);
DROP INDEX checks_by_task;
"""
"""Links every task's history (both lookups use `checks_by_task`, dropped last)."""

# _MIGRATIONS[n] is the SQL script that upgrades a schema from version n to n + 1.
_MIGRATIONS: Final[dict[int, str]] = {0: _SCHEMA_V1, 1: _SCHEMA_V2, 2: _SCHEMA_V3}

TASK_COLUMNS: Final = (
    "task_id, target, method, state, payload, idempotency_key, options, create_time, "
    "update_time, start_time, end_time, next_check_time, deadline, check_count, retries, "
    "status, result, error, labels, request_id, revision"
)
TASK_COUNT: Final = 21
PROGRESS_COLUMNS: Final = (
    "state, update_time, start_time, end_time, next_check_time, check_count, retries, status, "
    "result, error, revision"
)
"""The columns a recorded change can alter (`progress_row` order); the rest are set by create."""
CHECK_COLUMNS: Final = (
    "task_id, kind, check_number, started_time, finished_time, outcome, grpc_code, message, "
    "interval_s, reason, next_check_time, revision"
)
CHECK_COUNT: Final = 12


def refuse_newer(db: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; StoreError naming it and the file if it is newer than ours.

    An engine calls it before changing anything (its journal mode included), so a file from a
    newer asyncplugin is left exactly as it was.
    """
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} was written by a newer asyncplugin "
            f"(this one reads up to {SCHEMA_VERSION}); upgrade asyncplugin to use this file"
        )
    return version


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Brings the schema to SCHEMA_VERSION, one migration per transaction (none if current)."""
    version = refuse_newer(db, path)
    while version < SCHEMA_VERSION:
        # executescript commits any open transaction first, so the script carries its own.
        script = f"BEGIN IMMEDIATE; {_MIGRATIONS[version]} PRAGMA user_version = {version + 1};"
        try:
            db.executescript(script + " COMMIT;")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        version += 1


def marks(count: int) -> str:
    """`count` SQL parameter marks: "?, ?, ?"."""
    return ", ".join("?" * count)

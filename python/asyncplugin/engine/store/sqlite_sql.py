"""The SQLite store's statements for a step's write and for reading or deleting a history.

A task's history is a chain (schema version 3, see `sqlite_schema.py`): the task row's
`last_check` names its newest entry and each entry's `prev` the one before it. A step's write
appends its entries at the end of `checks`, each linked to the task's previous newest, and
moves `last_check` to its last one in the same UPDATE that records the task's progress, so one
write changes the task row and the table's last page, nothing else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from ..records import CheckRecord, TaskRecord
from .rows import check_from_row, check_row, progress_row
from .sqlite_schema import CHECK_COLUMNS, CHECK_COUNT, PROGRESS_COLUMNS, marks

__all__ = ["apply_write", "delete_task", "read_history"]

_PROGRESS_COUNT: Final = PROGRESS_COLUMNS.count(",") + 1
_UPDATE_PROGRESS: Final = (
    f"UPDATE tasks SET ({PROGRESS_COLUMNS}) = ({marks(_PROGRESS_COUNT)}) WHERE task_id = ?"
)
"""A step's update: only the columns a change can alter (not the payload, options, labels)."""
_UPDATE_PROGRESS_LINKED: Final = (
    f"UPDATE tasks SET ({PROGRESS_COLUMNS}, last_check) = ({marks(_PROGRESS_COUNT + 1)}) "
    "WHERE task_id = ?"
)
"""The same, moving the task's newest history entry to the one just appended."""
_LINK: Final = "UPDATE tasks SET last_check = ? WHERE task_id = ?"

_NUMBERED: Final = ", ".join(f"?{n}" for n in range(1, CHECK_COUNT + 1))
_APPEND_AFTER_NEWEST: Final = (
    f"INSERT INTO checks ({CHECK_COLUMNS}, prev) "
    f"VALUES ({_NUMBERED}, (SELECT last_check FROM tasks WHERE task_id = ?1))"
)
"""An entry linked to its task's newest one (?1 is the entry's task id)."""
_APPEND_AFTER: Final = (
    f"INSERT INTO checks ({CHECK_COLUMNS}, prev) VALUES ({marks(CHECK_COUNT + 1)})"
)
"""An entry linked to the given one (the previous entry of the same write)."""


def _chain(stop: str = "") -> str:
    """The ids of a task's history entries, newest first, following the links from the task row
    (`stop`: one more condition an entry must meet for the walk to go on past it).

    A link must point at an older entry of the same task (ids only grow), so even a damaged file
    cannot send the walk round in a cycle or into another task's history."""
    return f"""
WITH RECURSIVE chain(id) AS (
    SELECT last_check FROM tasks WHERE task_id = ?1
    UNION ALL
    SELECT checks.prev FROM checks JOIN chain ON checks.id = chain.id
    WHERE checks.task_id = ?1 AND checks.prev < checks.id{stop}
)"""


_CHAIN: Final = _chain()
_HISTORY: Final = (
    # The walk stops below the first entry at or under the revision asked for: revisions never
    # fall from one entry to the next (each write records the revision it made), so a watcher
    # asking for what is new reads a few entries, not the task's whole history.
    _chain(" AND checks.revision > ?2")
    + f" SELECT {', '.join('checks.' + c.strip() for c in CHECK_COLUMNS.split(','))} "
    "FROM chain JOIN checks ON checks.id = chain.id "
    "WHERE checks.task_id = ?1 AND checks.revision > ?2 ORDER BY checks.id"
)
_DELETE_HISTORY: Final = (
    f"{_CHAIN} DELETE FROM checks WHERE id IN (SELECT id FROM chain) AND task_id = ?1"
)


def apply_write(
    db: sqlite3.Connection, record: TaskRecord | None, checks: Sequence[CheckRecord]
) -> None:
    """Executes one `record` call's statements in the open transaction.

    Raises:
        KeyError: `record`'s task is not in the store. sqlite3.IntegrityError: a check names a
        task that is not in the store.
    """
    if record is None or not checks:
        _apply_general(db, record, checks)
        return
    task_id = record.task_id
    first = checks[0]
    if first.task_id != task_id or (len(checks) > 1 and _mixed(task_id, checks)):
        _apply_general(db, record, checks)
        return
    # The engine's step: its task's progress and that task's entries, in two statements for
    # the usual single entry (append, then update the row and its link together).
    try:
        newest = db.execute(_APPEND_AFTER_NEWEST, check_row(first)).lastrowid
        for check in checks[1:]:
            newest = db.execute(_APPEND_AFTER, (*check_row(check), newest)).lastrowid
    except sqlite3.IntegrityError:
        if not _exists(db, task_id):
            raise KeyError(f"task {task_id!r} is not in the store") from None
        raise
    cursor = db.execute(_UPDATE_PROGRESS_LINKED, (*progress_row(record), newest, task_id))
    if cursor.rowcount != 1:  # the append's foreign key found it: cannot happen
        raise KeyError(f"task {task_id!r} is not in the store")


def _mixed(task_id: str, checks: Sequence[CheckRecord]) -> bool:
    """True if any entry belongs to another task than `task_id`."""
    return any(check.task_id != task_id for check in checks)


def _apply_general(
    db: sqlite3.Connection, record: TaskRecord | None, checks: Sequence[CheckRecord]
) -> None:
    """Any other write: the task's progress, then each entry appended to its own task."""
    if record is not None:
        cursor = db.execute(_UPDATE_PROGRESS, (*progress_row(record), record.task_id))
        if cursor.rowcount != 1:
            raise KeyError(f"task {record.task_id!r} is not in the store")
    for check in checks:
        newest = db.execute(_APPEND_AFTER_NEWEST, check_row(check)).lastrowid
        db.execute(_LINK, (newest, check.task_id))


def _exists(db: sqlite3.Connection, task_id: str) -> bool:
    row = db.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return row is not None


def read_history(db: sqlite3.Connection, task_id: str, revision: int) -> list[CheckRecord]:
    """The task's history entries recorded after `revision`, oldest first."""
    return [check_from_row(row) for row in db.execute(_HISTORY, (task_id, revision))]


def delete_task(db: sqlite3.Connection, task_id: str) -> bool:
    """Deletes the task's history, then its row, in the open transaction; False if absent."""
    db.execute(_DELETE_HISTORY, (task_id,))
    return db.execute("DELETE FROM tasks WHERE task_id = ?", (task_id,)).rowcount == 1

"""The PostgreSQL store's statements: each one round trip, batched through arrays (`unnest`).

The lease queue follows the pattern of River, Procrastinate, pg-boss and Oban:

- LEASE: a MATERIALIZED CTE picks up to `limit` due, unleased tasks in due order with
  `FOR UPDATE SKIP LOCKED` (workers leasing at the same moment skip each other's rows instead of
  waiting), then one UPDATE gives them to this worker with `lease_token + 1`. A row leased by
  another worker between the CTE's snapshot and its lock is re-checked against the WHERE clause
  after the lock (READ COMMITTED re-evaluation), so it is skipped, never leased twice.
- WRITE: the records and check-history entries of a whole batch of steps in one statement. Each
  task row is updated only if the write's lease token is still the task's (the fence); the
  history entries of a write are inserted only if its task row was. A write without a token
  (a task this worker does not hold) goes through only while no live lease is held on the task.
  Rows already carrying the write's id are not written again (a retry after a lost connection).

Every time that decides when something is due is the database's `now()`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CANCEL_REQUESTS",
    "CHECKS",
    "CHECKS_AFTER",
    "CHECK_COLUMNS",
    "CREATE",
    "DELETE",
    "EXTEND",
    "FIND_IDS",
    "FIND_REQUEST",
    "GET",
    "LEASE",
    "NOTIFY_CHANNEL",
    "PROGRESS_COLUMNS",
    "RELEASE",
    "REQUEST_CANCEL",
    "TAKE_OVER",
    "TASK_COLUMNS",
    "TASK_COUNT",
    "WRITE",
    "WRITE_OUTCOMES",
    "list_tasks",
    "query_tasks",
]

NOTIFY_CHANNEL: Final = "asyncplugin_work"
"""The payload-less hint: new work or a cancel request is in the table."""

TASK_COLUMNS: Final = (
    "task_id, target, method, state, payload, idempotency_key, options, create_time, "
    "update_time, start_time, end_time, next_check_time, deadline, check_count, retries, "
    "status, result, error, labels, request_id, revision"
)
"""The record's columns, in `rows.task_row` order (the same as SQLite's)."""
TASK_COUNT: Final = 21
CHECK_COLUMNS: Final = (
    "task_id, kind, check_number, started_time, finished_time, outcome, grpc_code, message, "
    "interval_s, reason, next_check_time, revision"
)
"""A history entry's columns, in `rows.check_row` order."""
_TASK_TYPES: Final = (
    "text", "text", "text", "int2", "bytea", "text", "text", "float8", "float8", "float8",
    "float8", "float8", "float8", "int4", "int4", "bytea", "bytea", "bytea", "text", "text",
    "int4",
)  # fmt: skip
PROGRESS_COLUMNS: Final = (
    "task_id, state, update_time, start_time, end_time, next_check_time, check_count, retries, "
    "status, result, error, revision"
)
"""The columns a `record` call writes: the others (target, method, payload, key, options, create
time, deadline, labels, request id) are fixed when the task is created, so a check never sends
the payload again."""
_PROGRESS_TYPES: Final = (
    "text", "int2", "float8", "float8", "float8", "float8", "int4", "int4", "bytea", "bytea",
    "bytea", "int4",
)  # fmt: skip
_CHECK_TYPES: Final = (
    "text", "text", "int4", "float8", "float8", "text", "text", "text", "float8", "text",
    "float8", "int4",
)  # fmt: skip


def _arrays(types: tuple[str, ...], start: int = 0) -> str:
    return ", ".join(f"%s::{kind}[]" for kind in types[start:])


_TASK_NAMES: Final = TASK_COLUMNS.replace(" ", "")
_T: Final = [name for name in _TASK_NAMES.split(",")]

CREATE: Final = f"""
WITH v AS (
    SELECT * FROM unnest({_arrays(_TASK_TYPES)}, %s::float8[], %s::uuid[])
        AS v({TASK_COLUMNS}, due_in, wid)
), i AS (
    INSERT INTO tasks ({TASK_COLUMNS}, due_at, last_write)
    SELECT {", ".join(f"v.{name}" for name in _T)},
           now() + make_interval(secs => v.due_in), v.wid
    FROM v
    ON CONFLICT DO NOTHING
    RETURNING task_id, due_at
)
SELECT i.task_id, CASE WHEN i.due_at IS NOT NULL THEN pg_notify('{NOTIFY_CHANNEL}', '') END
FROM i"""
"""Inserts new tasks, unleased and due as recorded; one hint per batch (PostgreSQL delivers
identical notifications of one transaction once). Returns the ids inserted: a task id or a
request id already taken inserts nothing (the caller finds out which)."""

_SET_ROW: Final = ", ".join(
    f"{name} = v.{name}" for name in PROGRESS_COLUMNS.replace(" ", "").split(",")[1:]
)

WRITE: Final = f"""
WITH v AS (
    SELECT * FROM unnest(%s::uuid[], %s::int8[], %s::bool[], %s::float8[], %s::float8[],
                         {_arrays(_PROGRESS_TYPES)})
        AS v(wid, token, full_row, due_in, keep_s, {PROGRESS_COLUMNS})
), u AS (
    UPDATE tasks t SET {_SET_ROW},
        due_at = now() + make_interval(secs => v.due_in),
        lease_until = now() + make_interval(secs => v.keep_s),
        lease_owner = CASE WHEN v.keep_s IS NULL THEN NULL ELSE t.lease_owner END,
        cancel_requested = t.cancel_requested AND v.due_in IS NOT NULL,
        last_write = v.wid
    FROM v
    WHERE v.full_row AND t.task_id = v.task_id AND t.last_write IS DISTINCT FROM v.wid
      AND CASE WHEN v.token IS NULL THEN t.lease_until IS NULL OR t.lease_until <= now()
               ELSE t.lease_token = v.token END
    RETURNING v.wid
), o AS (
    UPDATE tasks t SET last_write = v.wid
    FROM v
    WHERE NOT v.full_row AND t.task_id = v.task_id AND t.last_write IS DISTINCT FROM v.wid
      AND CASE WHEN v.token IS NULL
               THEN t.lease_until IS NULL OR t.lease_until <= now() OR t.due_at IS NULL
               ELSE t.lease_token = v.token END
    RETURNING v.wid
), ok AS (
    SELECT wid FROM u UNION ALL SELECT wid FROM o
), c AS (
    INSERT INTO checks ({CHECK_COLUMNS})
    SELECT {CHECK_COLUMNS} FROM unnest(%s::uuid[], {_arrays(_CHECK_TYPES)})
        WITH ORDINALITY AS c(wid, {CHECK_COLUMNS}, ord)
    WHERE c.wid IN (SELECT wid FROM ok)
    ORDER BY c.ord
)
SELECT wid FROM ok"""
"""One batch of writes (parameters: see `PostgresStore._write_params`); returns the ids of the
writes applied."""

WRITE_OUTCOMES: Final = """
SELECT task_id, last_write, lease_token, lease_owner, lease_until > now()
FROM tasks WHERE task_id = ANY(%s::text[])"""
"""Why writes were not applied: the tasks' current fence, for the ones the WRITE skipped."""

LEASE: Final = f"""
WITH c AS MATERIALIZED (
    SELECT task_id FROM tasks
    WHERE due_at <= now() + make_interval(secs => %(horizon_s)s)
      AND (lease_until IS NULL OR lease_until <= now())
    ORDER BY due_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks t
SET lease_owner = %(owner)s,
    lease_token = t.lease_token + 1,
    lease_until = greatest(t.due_at, now()) + make_interval(secs => %(lease_s)s)
FROM c
WHERE t.task_id = c.task_id
RETURNING {", ".join(f"t.{name}" for name in _T)}, t.lease_token,
    greatest(extract(epoch FROM t.due_at - now()), 0)::float8, t.cancel_requested"""

TAKE_OVER: Final = f"""
WITH old AS (
    SELECT task_id, lease_until FROM tasks
    WHERE task_id = %(task_id)s AND due_at IS NOT NULL
    FOR UPDATE
)
UPDATE tasks t
SET lease_owner = %(owner)s,
    lease_token = t.lease_token + 1,
    lease_until = greatest(t.due_at, now(), old.lease_until) + make_interval(secs => %(lease_s)s)
FROM old
WHERE t.task_id = old.task_id
RETURNING {", ".join(f"t.{name}" for name in _T)}, t.lease_token,
    greatest(extract(epoch FROM t.due_at - now()), extract(epoch FROM old.lease_until - now()),
             0)::float8,
    t.cancel_requested"""
"""Leases an unfinished task to this worker whoever holds it (a completion reported to this
worker): the token grows, so the previous holder's writes are refused from now on, and the
next call is not due before the previous lease would have ended (its call may still run)."""

EXTEND: Final = """
UPDATE tasks SET lease_until = now() + make_interval(secs => %s)
WHERE task_id = %s AND lease_token = %s
RETURNING 1"""

RELEASE: Final = """
UPDATE tasks t SET lease_owner = NULL, lease_until = NULL
FROM unnest(%s::text[], %s::int8[]) AS v(task_id, token)
WHERE t.task_id = v.task_id AND t.lease_token = v.token"""

REQUEST_CANCEL: Final = f"""
UPDATE tasks SET cancel_requested = true, due_at = now()
WHERE task_id = %s AND due_at IS NOT NULL
RETURNING pg_notify('{NOTIFY_CHANNEL}', '')"""

CANCEL_REQUESTS: Final = """
SELECT task_id, lease_token FROM tasks
WHERE cancel_requested AND due_at IS NOT NULL AND lease_owner = %s"""

GET: Final = f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = %s"

FIND_REQUEST: Final = f"SELECT {TASK_COLUMNS} FROM tasks WHERE request_id = %s"

FIND_IDS: Final = """
SELECT task_id FROM tasks WHERE task_id >= %s AND task_id < %s ORDER BY task_id LIMIT %s"""

CHECKS_AFTER: Final = f"""
SELECT {CHECK_COLUMNS} FROM checks WHERE task_id = %s AND revision > %s ORDER BY id"""

DELETE: Final = "DELETE FROM tasks WHERE task_id = %s RETURNING 1"
"""Removes a task; its history goes with it (ON DELETE CASCADE)."""

CHECKS: Final = f"SELECT {CHECK_COLUMNS} FROM checks WHERE task_id = %s ORDER BY id"


def list_tasks(*, by_state: bool, limited: bool) -> str:
    """The `list` query: newest first (the later created first among equal create times)."""
    sql = f"SELECT {TASK_COLUMNS} FROM tasks"
    if by_state:
        sql += " WHERE state = ANY(%s::int2[])"
    sql += " ORDER BY create_time DESC, seq DESC"
    if limited:
        sql += " LIMIT %s"
    return sql


def query_tasks(
    *, states: bool, target: bool, after: bool, before: bool, labels: bool, cursor: bool
) -> str:
    """The `query` statement for the criteria given (each one parameter, in this order; the
    cursor two), newest first by creation time then id, with LIMIT last."""
    clauses = []
    if states:
        clauses.append("state = ANY(%s::int2[])")
    if target:
        clauses.append("target = %s")
    if after:
        clauses.append("create_time >= %s")
    if before:
        clauses.append("create_time < %s")
    if labels:
        clauses.append("labels::jsonb @> %s::jsonb")
    if cursor:
        clauses.append("(create_time, task_id) < (%s, %s)")
    sql = f"SELECT {TASK_COLUMNS} FROM tasks"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return sql + " ORDER BY create_time DESC, task_id DESC LIMIT %s"

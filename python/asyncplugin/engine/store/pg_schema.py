"""The PostgreSQL store's schema and its versioned migrations.

Version 1:

    asyncplugin_schema(version)              one row: the schema version of this database
    tasks(seq identity, task_id PK, target, method, state smallint, payload bytea,
          idempotency_key, options text (JSON), create_time .. deadline float8 (the record's
          epoch seconds, as the worker that wrote them read its clock), check_count, retries,
          status, result, error bytea, labels text (JSON), request_id, revision,
          due_at timestamptz        when the next call is due, on the DATABASE's clock;
                                    NULL once the task is finished
          lease_owner, lease_until  the worker holding the task and until when (database clock)
          lease_token bigint        +1 on every lease: the fence every write is checked against
          cancel_requested bool     a cancel asked through another worker
          last_write uuid)          the id of the last write, so a write retried after a lost
                                    connection is recognised as already applied
    checks(id identity PK, task_id FK, kind, check_number, started_time, finished_time,
           outcome, grpc_code, message, interval_s, reason, next_check_time, revision)

Indexes: `tasks_due (due_at) WHERE due_at IS NOT NULL` is the scheduling index: finished tasks
are not in it, so it holds only unfinished tasks however many finished ones the table keeps.
`tasks_by_order (create_time DESC, task_id DESC)` serves listings and their page cursors (the
other filters are checked along it); `tasks_by_request` (unique, partial) makes a request id
name one task; `tasks_cancel` (partial, tiny) finds cancel requests; `checks_by_task` reads one
history. Every index costs each write that moves `due_at`, so there are no more. Task ids sort
byte-wise (`COLLATE "C"`), as in the other stores, so id prefixes are index range scans. Lease
columns are in no index, so a lease (an UPDATE of lease columns only) can be a HOT update that
touches no index (fillfactor 80 leaves room on each page for it).

Vacuum: `tasks` is updated several times per check, so its dead rows are vacuumed after a fixed
10,000 instead of autovacuum's default 20% of the table (which on a million-row table lets 200k
dead rows pile up), without cost-based throttling; `checks` only grows, and is vacuumed for its
visibility map after 5% new rows.

Migrations run in one transaction under an advisory lock, so workers that start together apply
each step exactly once; a database whose version is newer than this code's is refused.
"""

from __future__ import annotations

import logging
from typing import Final

import psycopg

from ..errors import StoreError
from .pg_connection import Conn, one_line

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

_log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
"""The schema version this code writes and reads."""

_V1: Final = """
CREATE TABLE tasks (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    task_id text COLLATE "C" PRIMARY KEY,
    target text NOT NULL,
    method text NOT NULL,
    state smallint NOT NULL,
    payload bytea NOT NULL,
    idempotency_key text NOT NULL,
    options text NOT NULL,
    create_time float8 NOT NULL,
    update_time float8 NOT NULL,
    start_time float8,
    end_time float8,
    next_check_time float8,
    deadline float8,
    check_count integer NOT NULL,
    retries integer NOT NULL,
    status bytea,
    result bytea,
    error bytea,
    labels text NOT NULL DEFAULT '{}',
    request_id text NOT NULL DEFAULT '',
    revision integer NOT NULL DEFAULT 1,
    due_at timestamptz,
    lease_owner text,
    lease_until timestamptz,
    lease_token bigint NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    last_write uuid
) WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.02
);
CREATE INDEX tasks_due ON tasks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX tasks_by_order ON tasks (create_time DESC, task_id DESC);
CREATE UNIQUE INDEX tasks_by_request ON tasks (request_id) WHERE request_id <> '';
CREATE INDEX tasks_cancel ON tasks (task_id) WHERE cancel_requested;
CREATE TABLE checks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id text COLLATE "C" NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    kind text NOT NULL,
    check_number integer NOT NULL,
    started_time float8 NOT NULL,
    finished_time float8 NOT NULL,
    outcome text NOT NULL,
    grpc_code text NOT NULL,
    message text NOT NULL,
    interval_s float8,
    reason text NOT NULL,
    next_check_time float8,
    revision integer NOT NULL DEFAULT 1
) WITH (
    autovacuum_vacuum_insert_scale_factor = 0.05
);
CREATE INDEX checks_by_task ON checks (task_id, id);
"""

MIGRATIONS: Final[dict[int, str]] = {0: _V1}
"""MIGRATIONS[n] upgrades a schema from version n to n + 1 (0: an empty database)."""

VERSION_TABLE: Final = "asyncplugin_schema"

CREATE_VERSION_TABLE: Final = f"""
CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version integer NOT NULL
)"""

LOCK_KEY: Final = 0x61737970  # "asyp": the advisory lock migrations hold


async def migrate(conn: Conn, *, where: str, read_only: bool) -> tuple[int, int]:
    """Brings the schema to SCHEMA_VERSION in one transaction under the advisory lock; returns
    the version before and after. A reader (`read_only`) changes nothing and accepts only this
    version.

    Raises:
        StoreError: the schema is newer than this code (both versions named), or older for a
            reader, or the database refused a statement.
    """
    try:
        async with conn.transaction():
            if not read_only:
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
                await conn.execute(CREATE_VERSION_TABLE)
            found = await (
                await conn.execute("SELECT to_regclass(%s) IS NOT NULL", [VERSION_TABLE])
            ).fetchone()
            row = None
            if found and found[0]:
                row = await (await conn.execute(f"SELECT version FROM {VERSION_TABLE}")).fetchone()
            before = version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"PostgreSQL at {where}: schema version {version} was written by a newer "
                    f"asyncplugin (this one reads up to {SCHEMA_VERSION}); upgrade asyncplugin "
                    "on this worker"
                )
            if read_only and version != SCHEMA_VERSION:
                raise StoreError(
                    f"PostgreSQL at {where}: schema version {version}, this asyncplugin needs "
                    f"{SCHEMA_VERSION}; run 'asyncplugin store migrate URL' first"
                )
            while version < SCHEMA_VERSION:
                await conn.execute(MIGRATIONS[version].encode())
                version += 1
            if version != before:
                await conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s) "
                    "ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
                    [version],
                )
                _log.info("PostgreSQL at %s: schema migrated from %d to %d", where, before, version)
    except psycopg.Error as err:
        raise StoreError(
            f"PostgreSQL at {where}: cannot check or migrate the schema: {one_line(err)}"
        ) from err
    return before, version

"""A plugin process for the fault-injection tests: idempotent jobs kept in its own SQLite file.

    python -m tests.reliability.jobs_plugin --db jobs.db [--port N] [--calls]

Built on the SDK (AsyncPlugin + PluginServer) and run as its own process, so the tests can kill
it (SIGKILL) and start it again on the same port without losing its jobs. It prints
"PORT <n>" once it serves. The payload of each task says how the job behaves:

    {"duration_s": 2.0}                 a job that ends duration_s after its first initiation
    {"checks": 5}                       a job that ends at status check number 5 (the same
                                        check sent again gets the same answer)
    {"mode": "hang"}                    RUNNING at once, then no status check is ever answered
    {"mode": "slow", "delay_s": 1.5}    a job whose every status check takes delay_s to answer

Evidence for the tests, in the file: every initiating call is a row of `starts` (idempotency
key, arrival time, process id), and each job is created once per idempotency key in `jobs`, as a
real remote API given an idempotency key would do. With --calls, every call is also a row of
`calls` (key, kind, check number, start and end time, pid), so a test can look for two calls of
one task in flight at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import time
from typing import Any

from asyncplugin import Request, Response, Task, TaskState
from asyncplugin.plugin import AsyncPlugin, PluginServer, remote_status_input

Payload = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS starts (key TEXT NOT NULL, at REAL NOT NULL, pid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, started REAL NOT NULL, ends REAL NOT NULL);
CREATE TABLE IF NOT EXISTS calls (key TEXT NOT NULL, kind TEXT NOT NULL, number INTEGER NOT NULL,
                                  started REAL NOT NULL, ended REAL NOT NULL, pid INTEGER NOT NULL);
"""


def open_db(path: str) -> sqlite3.Connection:
    """The plugin's own evidence file (WAL; one writer: this process)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(_SCHEMA)
    return db


class Jobs(AsyncPlugin[Payload, Payload]):
    """Starts one job per idempotency key; answers RUNNING until the job's end time passes."""

    def __init__(self, db: sqlite3.Connection, *, record_calls: bool = False) -> None:
        self.db = db
        self.never = asyncio.Event()
        self.record_calls = record_calls

    def _call(self, request: Request[Payload], kind: str, started: float) -> None:
        """Records one call with its start and end (--calls)."""
        if self.record_calls:
            context = request.context
            self.db.execute(
                "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?)",
                (context.idempotency_key, kind, context.check_number, started, time.time(),
                 os.getpid()),
            )  # fmt: skip

    async def initiate_work(self, request: Request[Payload]) -> Response[Payload]:
        """Records the initiation, creates the job unless the key already has one."""
        key = request.context.idempotency_key
        now = time.time()
        duration_s = float(request.data.get("duration_s", 1.0))
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO starts VALUES (?, ?, ?)", (key, now, os.getpid()))
        self.db.execute("INSERT OR IGNORE INTO jobs VALUES (?, ?, ?)", (key, now, now + duration_s))
        self.db.execute("COMMIT")
        self._call(request, "INITIATE", now)
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"job": key}))

    async def check_status(self, request: Request[Payload]) -> Payload | Response[Payload]:
        """RUNNING while the job runs, then its result; "hang" never answers."""
        started = time.time()
        try:
            return await self._check(request)
        finally:
            kind = "CANCEL" if request.cancel_requested else "CHECK"
            self._call(request, kind, started)

    async def _check(self, request: Request[Payload]) -> Payload | Response[Payload]:
        mode = request.data.get("mode", "job")
        if mode == "hang":
            await self.never.wait()
        if mode == "slow":
            await asyncio.sleep(float(request.data.get("delay_s", 1.0)))
        key = str(remote_status_input(request).get("job", ""))
        row = self.db.execute("SELECT ends FROM jobs WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise LookupError(f"no job {key!r}")  # -> PLUGIN_INTERNAL_ERROR: a test would see it
        if "checks" in request.data:
            if request.context.check_number >= int(request.data["checks"]):
                return {"job": key, "result": f"result-{key}"}
        elif time.time() >= row[0]:
            return {"job": key, "result": f"result-{key}"}
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"job": key}))


async def main() -> None:
    """Serves Jobs on 127.0.0.1 until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--calls", action="store_true", help="record every call with its times")
    args = parser.parse_args()
    plugin = Jobs(open_db(args.db), record_calls=args.calls)
    server = PluginServer(plugin, port=args.port)
    port = await server.start()
    print(f"PORT {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())

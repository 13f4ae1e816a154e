"""Engine worker processes on one PostgreSQL, and what their run left behind.

`Fleet` starts N `tests.reliability.engine_proc` workers on one database and one jobs plugin
(started with --calls, so it records every call's start and end); each worker submits its share
of the wanted tasks that the database does not hold yet, so a restarted worker submits only what
its killed predecessor had not recorded. `Fleet.kill`, `restart`, `pause` and `resume` are the
faults (SIGKILL, SIGSTOP, SIGCONT to that one worker's pid). `count` reads the database and the
plugin's file afterwards and returns a `Tally` whose problems must all be zero:

  - tasks_lost: a wanted task (idempotency key) not in the database;
  - duplicate_tasks: one key recorded as two tasks;
  - unfinished / not_succeeded: tasks not ended, or ended otherwise than SUCCEEDED;
  - results_differing: a result that is not the plugin's answer for that job;
  - results_recorded_twice: more than one history entry ending a task;
  - history_problems: check numbers not increasing, two answered initiations (invariants.py);
  - initiations_after_running: an initiating call the plugin received after the moment the
    recorded RUNNING answer to an initiation had arrived;
  - overlapping_calls: two calls for one task in flight at once, as the plugin saw them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from asyncplugin.engine.store.pg_sql import CHECK_COLUMNS
from asyncplugin.engine.store.rows import check_from_row
from asyncplugin.protocol import TaskState, decode_payload
from tests.reliability.invariants import history_problems
from tests.reliability.procs import Child

_ENDS = ("SUCCEEDED", "FAILED", "CANCELLED", "PROTOCOL_VIOLATION", "RPC_ERROR")


@dataclass
class Tally:
    """What a run left behind (see the module docstring); `problems()` must be all zero."""

    tasks: int = 0
    tasks_lost: int = 0
    duplicate_tasks: int = 0
    unfinished: int = 0
    not_succeeded: int = 0
    results_differing: int = 0
    results_recorded_twice: int = 0
    history_problems: int = 0
    initiations_after_running: int = 0
    overlapping_calls: int = 0
    calls: int = 0
    checks_recorded: int = 0
    calls_repeated: int = 0
    refused_writes: int = 0
    examples: list[str] = field(default_factory=list)

    def problems(self) -> dict[str, int]:
        """The counts that must be zero, by name."""
        return {
            "tasks_lost": self.tasks_lost,
            "duplicate_tasks": self.duplicate_tasks,
            "unfinished": self.unfinished,
            "not_succeeded": self.not_succeeded,
            "results_differing": self.results_differing,
            "results_recorded_twice": self.results_recorded_twice,
            "history_problems": self.history_problems,
            "initiations_after_running": self.initiations_after_running,
            "overlapping_calls": self.overlapping_calls,
        }

    def summary(self) -> str:
        """One line of figures for the test log and docs/reliability.md."""
        return (
            f"tasks={self.tasks} problems={self.problems()} plugin calls={self.calls} "
            f"(same check sent again={self.calls_repeated}) checks recorded="
            f"{self.checks_recorded} late writes refused by the fence={self.refused_writes}"
            + (f" examples={self.examples[:5]}" if self.examples else "")
        )


def wanted_tasks(count: int, seed: int, **payload: Any) -> list[dict[str, Any]]:
    """`count` tasks whose jobs end after 2-8 status checks (seeded)."""
    rng = random.Random(seed)
    return [
        {"key": f"job-{i:05d}", "payload": {"checks": rng.randint(2, 8), **payload}}
        for i in range(count)
    ]


class Fleet:
    """N engine workers on one database (see the module docstring)."""

    def __init__(
        self,
        work: Path,
        url: str,
        target: str,
        wanted: list[dict[str, Any]],
        *,
        size: int,
        policy: dict[str, Any],
        retry: dict[str, Any],
        lease: dict[str, Any],
    ) -> None:
        self.work = work
        self.url = url
        self.target = target
        self.wanted = wanted
        self.size = size
        self._options = [
            "--policy", json.dumps(policy), "--retry", json.dumps(retry),
            "--lease", json.dumps(lease),
        ]  # fmt: skip
        self.workers: list[Child | None] = [None] * size
        self.starts = Counter[int]()

    def _keys_recorded(self) -> set[str]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            if conn.execute(b"SELECT to_regclass('tasks') IS NULL").fetchone() == (True,):
                return set()
            return {row[0] for row in conn.execute(b"SELECT idempotency_key FROM tasks")}

    async def start(self, index: int) -> Child:
        """Starts worker `index` with the part of its share not recorded yet."""
        have = self._keys_recorded()
        share = [item for item in self.wanted[index :: self.size] if item["key"] not in have]
        self.starts[index] += 1
        submit = self.work / f"submit-{index}-{self.starts[index]}.json"
        submit.write_text(json.dumps(share))
        child = Child(
            "tests.reliability.engine_proc",
            "--store", self.url, "--target", self.target, "--submit", str(submit),
            *self._options,
            log=self.work / f"worker-{index}.log",
        )  # fmt: skip
        await child.start()
        self.workers[index] = child
        await child.wait_for("READY", timeout_s=60)
        return child

    async def start_all(self) -> None:
        """Starts every worker."""
        await asyncio.gather(*(self.start(index) for index in range(self.size)))

    async def kill(self, index: int) -> None:
        """SIGKILL to worker `index` (its leases come back when they expire); returns once the
        database has finished every statement the worker had sent (its sessions are gone), so
        what the worker recorded is known before its share is submitted again."""
        child = self.workers[index]
        if child is not None:
            pid = child.pid
            await child.kill()
            async with asyncio.timeout(30):
                while self._sessions(pid):  # noqa: ASYNC110 - the server's own progress
                    await asyncio.sleep(0.05)

    def _sessions(self, pid: int) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                b"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                [f"asyncplugin %:{pid}:%"],
            ).fetchone()
        assert row is not None
        return int(row[0])

    async def restart(self, index: int) -> None:
        """SIGKILL, then start worker `index` again."""
        await self.kill(index)
        await self.start(index)

    def signal(self, index: int, signum: signal.Signals) -> None:
        """Sends `signum` (SIGSTOP, SIGCONT) to worker `index` only."""
        child = self.workers[index]
        assert child is not None
        os.kill(child.pid, signum)

    def alive(self) -> list[bool]:
        """Which workers are still running (none should have exited on its own)."""
        return [child is not None and child.returncode is None for child in self.workers]

    def unfinished(self) -> int:
        """Tasks in the database not ended yet (plus wanted ones not recorded yet)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                b"SELECT count(*) FILTER (WHERE state IN (1, 2)), "
                b"count(DISTINCT idempotency_key) FROM tasks"
            ).fetchone()
        assert row is not None
        return int(row[0]) + len(self.wanted) - int(row[1])

    async def until_done(self, *, timeout_s: float) -> None:
        """Waits until every wanted task has ended (polling the database, bounded)."""
        async with asyncio.timeout(timeout_s):
            while self.unfinished():  # noqa: ASYNC110 - real processes make the progress
                await asyncio.sleep(0.25)

    async def until_calls(self, *, kind: str, at_least: int, timeout_s: float) -> None:
        """Waits until the plugin has answered `at_least` calls of `kind` (bounded)."""
        async with asyncio.timeout(timeout_s):
            while self._calls(kind) < at_least:  # noqa: ASYNC110 - a real process's progress
                await asyncio.sleep(0.05)

    def _calls(self, kind: str) -> int:
        path = self.work / "plugin.db"
        if not path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(path)) as db:
            try:
                row = db.execute("SELECT count(*) FROM calls WHERE kind = ?", (kind,)).fetchone()
            except sqlite3.OperationalError:  # the plugin has not created its tables yet
                return 0
        return int(row[0])

    async def stop(self) -> None:
        """SIGCONT (in case one is paused) and SIGKILL to every worker."""
        for child in self.workers:
            if child is not None and child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGCONT)
                await child.kill()

    def log_text(self) -> str:
        """Everything the workers wrote to stderr."""
        return "".join(
            (self.work / f"worker-{index}.log").read_text()
            for index in range(self.size)
            if (self.work / f"worker-{index}.log").exists()
        )


def count(fleet: Fleet, plugin_db: Path) -> Tally:
    """Reads what the run left in the database and the plugin's file (module docstring)."""
    tally = Tally(tasks=len(fleet.wanted))
    with psycopg.connect(fleet.url, autocommit=True) as conn:
        tasks = conn.execute(
            b"SELECT task_id, idempotency_key, state, result FROM tasks"
        ).fetchall()
        rows = conn.execute(f"SELECT {CHECK_COLUMNS} FROM checks ORDER BY id".encode()).fetchall()
    with contextlib.closing(sqlite3.connect(plugin_db)) as db:
        calls = db.execute("SELECT key, kind, number, started, ended FROM calls").fetchall()
    histories = defaultdict(list)
    for row in rows:
        check = check_from_row(row)
        histories[check.task_id].append(check)
    tally.checks_recorded = len(rows)
    tally.calls = len(calls)
    keys = Counter(key for _, key, _, _ in tasks)
    tally.duplicate_tasks = sum(n - 1 for n in keys.values() if n > 1)
    tally.tasks_lost = sum(1 for item in fleet.wanted if item["key"] not in keys)
    by_key: dict[str, list[tuple[str, int, float, float]]] = defaultdict(list)
    for key, kind, number, started, ended in calls:
        by_key[key].append((kind, number, started, ended))
    for task_id, key, state, result in tasks:
        name = TaskState(state).name
        history = histories[task_id]
        if TaskState(state) in (TaskState.WAITING, TaskState.RUNNING):
            tally.unfinished += 1
        elif name != "SUCCEEDED":
            tally.not_succeeded += 1
            tally.examples.append(f"{key} {name}: {[str(c.message) for c in history[-2:]]}")
        elif decode_payload(bytes(result), dict) != {"job": key, "result": f"result-{key}"}:
            tally.results_differing += 1
        ends = [c for c in history if c.kind.value != "CANCEL" and c.outcome.value in _ENDS]
        tally.results_recorded_twice += max(0, len(ends) - 1)
        if history_problems(history):
            tally.history_problems += 1
            tally.examples.append(f"{key}: {history_problems(history)}")
        running = [
            c for c in history if c.kind.value == "INITIATE" and c.outcome.value == "RUNNING"
        ]
        mine = by_key[key]
        if running:
            recorded_at = running[0].finished_time
            tally.initiations_after_running += sum(
                1 for kind, _, started, _ in mine if kind == "INITIATE" and started > recorded_at
            )
        numbers = Counter((kind, number) for kind, number, _, _ in mine)
        tally.calls_repeated += sum(n - 1 for n in numbers.values() if n > 1)
        spans = sorted((started, ended) for _, _, started, ended in mine)
        overlaps = sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
        if overlaps:
            tally.overlapping_calls += overlaps
            tally.examples.append(f"{key}: overlapping calls {spans}")
    tally.refused_writes = fleet.log_text().count("late write refused")
    return tally

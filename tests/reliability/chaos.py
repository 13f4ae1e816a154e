"""The SIGKILL chaos run: an engine process killed at random points while its tasks are in flight.

`run_chaos` spawns one plugin process (tests.reliability.jobs_plugin, which records every
initiation it receives in its own SQLite file) and then, round after round, an engine process
(tests.reliability.engine_proc) on ONE SQLite store: each round submits the tasks the store does
not hold yet, and is killed with SIGKILL after a random delay. A last round runs until every
task has ended. `ChaosReport` then counts, from the two files and what the engines printed
before dying:

  - tasks lost: a task the engine said it had recorded ("S" lines) that is not in the store,
    plus keys submitted in no round at all;
  - duplicate tasks: one idempotency key recorded as two tasks;
  - finished results lost: a task the engine announced as ended ("F" lines, printed only after
    the commit) that the store no longer shows ended with the same result;
  - initiations repeated after a recorded RUNNING: an initiating call the plugin received after
    the time the engine recorded as the end of the call whose RUNNING answer it kept;
  - results recorded twice: more than one terminal outcome in a task's history;
  - check numbers not increasing: answered calls in a task's history whose check numbers do not
    strictly increase.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.procs import Child, start_plugin

POLICY = {
    "initial_interval_s": 0.2,
    "multiplier": 1.5,
    "max_interval_s": 1.0,
    "min_interval_s": 0.1,
    "jitter": 0.2,
    "check_timeout_s": 5.0,
    "deadline_s": 600.0,
}
RETRY = {
    "initial_backoff_s": 0.1,
    "multiplier": 2.0,
    "max_backoff_s": 1.0,
    "min_backoff_s": 0.05,
    "max_retries": 8,
}
_TERMINAL_OUTCOMES = ("SUCCEEDED", "FAILED", "CANCELLED", "PROTOCOL_VIOLATION", "RPC_ERROR")
_ANSWERED = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")


@dataclass
class Kill:
    """One SIGKILL: when it came and what was in flight."""

    after_s: float
    during_submit: bool
    unfinished: int
    finished: int


@dataclass
class ChaosReport:
    """What the chaos run counted (every figure should be 0 except the totals)."""

    tasks: int
    kills: list[Kill] = field(default_factory=list)
    tasks_lost: int = 0
    duplicate_tasks: int = 0
    finished_lost: int = 0
    repeated_initiations_after_running: int = 0
    results_recorded_twice: int = 0
    check_numbers_not_increasing: int = 0
    not_succeeded: int = 0
    initiations_received: int = 0
    jobs_started: int = 0
    initiations_resent_before_running: int = 0
    checks_recorded: int = 0
    wall_s: float = 0.0
    final_rss_kb: int = 0

    def problems(self) -> dict[str, int]:
        """The counts that must be zero, by name."""
        return {
            "tasks_lost": self.tasks_lost,
            "duplicate_tasks": self.duplicate_tasks,
            "finished_lost": self.finished_lost,
            "repeated_initiations_after_running": self.repeated_initiations_after_running,
            "results_recorded_twice": self.results_recorded_twice,
            "check_numbers_not_increasing": self.check_numbers_not_increasing,
            "not_succeeded": self.not_succeeded,
        }

    def summary(self) -> str:
        """A few lines for the test log and docs/reliability.md."""
        kills = ", ".join(
            f"{k.after_s:.2f}s{'(submitting)' if k.during_submit else ''}"
            f"[{k.unfinished} in flight/{k.finished} done]"
            for k in self.kills
        )
        return (
            f"tasks={self.tasks} kills={len(self.kills)}: {kills}\n"
            f"problems={self.problems()}\n"
            f"initiations received={self.initiations_received} jobs started={self.jobs_started} "
            f"re-sent before RUNNING was recorded={self.initiations_resent_before_running} "
            f"checks recorded={self.checks_recorded} wall={self.wall_s:.1f}s "
            f"final engine peak RSS={self.final_rss_kb} KiB"
        )


def _store_keys(store: Path) -> set[str]:
    if not store.exists():
        return set()
    with sqlite3.connect(store) as db:
        return {row[0] for row in db.execute("SELECT idempotency_key FROM tasks")}


def _store_counts(store: Path) -> tuple[int, int]:
    """(unfinished, finished) tasks in the store."""
    if not store.exists():
        return 0, 0
    with sqlite3.connect(store) as db:
        unfinished = db.execute("SELECT count(*) FROM tasks WHERE state IN (1, 2)").fetchone()[0]
        total = db.execute("SELECT count(*) FROM tasks").fetchone()[0]
    return int(unfinished), int(total - unfinished)


async def run_chaos(
    work: Path,
    *,
    tasks: int,
    rounds: int,
    seed: int,
    duration_s: tuple[float, float] = (1.0, 3.0),
    kill_after_s: tuple[float, float] = (0.3, 2.5),
    first_kill_after_s: tuple[float, float] | None = None,
    final_timeout_s: float = 120.0,
) -> ChaosReport:
    """Runs `rounds` killed engine rounds and a final one on one store; returns the counts.

    Each task's job lasts a random `duration_s` from its first initiation; each kill comes a
    random `kill_after_s` after the engine printed READY (`first_kill_after_s` for round 0, to
    land a kill while tasks are still being submitted).
    """
    rng = random.Random(seed)
    started = time.monotonic()
    store, plugin_db = work / "tasks.db", work / "plugin.db"
    wanted: list[dict[str, Any]] = [
        {"key": f"job-{i:05d}", "payload": {"duration_s": round(rng.uniform(*duration_s), 3)}}
        for i in range(tasks)
    ]
    report = ChaosReport(tasks=tasks)
    announced_ids: dict[str, str] = {}  # task id -> key, from "S" lines
    finished: dict[str, tuple[str, str]] = {}  # task id -> (state, result digest), "F" lines
    plugin, port = await start_plugin(plugin_db, work / "plugin.log")
    try:
        for round_ in range(rounds + 1):
            have = _store_keys(store)
            submit = work / f"submit-{round_}.json"
            submit.write_text(json.dumps([item for item in wanted if item["key"] not in have]))
            final = round_ == rounds
            args = [
                "--store",
                str(store),
                "--target",
                f"127.0.0.1:{port}",
                "--submit",
                str(submit),
                "--policy",
                json.dumps(POLICY),
                "--retry",
                json.dumps(RETRY),
            ]
            engine = Child(
                "tests.reliability.engine_proc",
                *args,
                *(["--until-done"] if final else []),
                log=work / f"engine-{round_}.log",
            )
            await engine.start()
            try:
                await engine.wait_for("READY", timeout_s=30)
                if final:
                    done = await engine.wait_for("DONE", timeout_s=final_timeout_s)
                    report.final_rss_kb = int(done.split()[1])
                    await engine.wait(timeout_s=30)
                else:
                    window = first_kill_after_s if round_ == 0 and first_kill_after_s else None
                    delay = rng.uniform(*(window or kill_after_s))
                    await asyncio.sleep(delay)  # the fault: a kill at a random moment
                    during_submit = not engine.matching("SUBMITTED")
                    await engine.kill()
                    report.kills.append(Kill(delay, during_submit, *_store_counts(store)))
            finally:
                await engine.kill()
            for line in engine.matching("S "):
                _, task_id, key = line.split()
                announced_ids[task_id] = key
            for line in engine.matching("F "):
                _, task_id, state, digest = line.split()[:4]
                finished.setdefault(task_id, (state, digest))
    finally:
        await plugin.kill()
    _count(report, store, plugin_db, wanted, announced_ids, finished)
    report.wall_s = time.monotonic() - started
    return report


def _count(
    report: ChaosReport,
    store: Path,
    plugin_db: Path,
    wanted: list[dict[str, Any]],
    announced: dict[str, str],
    finished: dict[str, tuple[str, str]],
) -> None:
    import hashlib

    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT task_id, idempotency_key, state, result FROM tasks").fetchall()
        checks = db.execute(
            "SELECT task_id, kind, check_number, outcome, finished_time FROM checks ORDER BY id"
        ).fetchall()
    with sqlite3.connect(plugin_db) as db:
        starts = db.execute("SELECT key, at FROM starts").fetchall()
        report.jobs_started = int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])
    names = {1: "WAITING", 2: "RUNNING", 3: "SUCCEEDED", 4: "FAILED", 5: "CANCELLED"}
    tasks = {
        task_id: (key, names[state], hashlib.sha256(result or b"").hexdigest()[:16])
        for task_id, key, state, result in rows
    }
    keys = Counter(key for key, _, _ in tasks.values())
    report.duplicate_tasks = sum(n - 1 for n in keys.values() if n > 1)
    report.tasks_lost = sum(1 for task_id in announced if task_id not in tasks) + sum(
        1 for item in wanted if item["key"] not in keys
    )
    report.finished_lost = sum(
        1 for task_id, seen in finished.items() if tasks.get(task_id, ("",) * 3)[1:] != seen
    )
    report.not_succeeded = sum(1 for _, state, _ in tasks.values() if state != "SUCCEEDED")
    history: dict[str, list[tuple[str, int, str, float]]] = defaultdict(list)
    for task_id, kind, number, outcome, finished_time in checks:
        history[task_id].append((kind, number, outcome, finished_time))
    report.checks_recorded = len(checks)
    arrivals: dict[str, list[float]] = defaultdict(list)
    for key, at in starts:
        arrivals[key].append(at)
    report.initiations_received = len(starts)
    for task_id, (key, _, _) in tasks.items():
        entries = history[task_id]
        ends = [e for e in entries if e[2] in _TERMINAL_OUTCOMES]
        report.results_recorded_twice += max(0, len(ends) - 1)
        numbers = [number for _, number, outcome, _ in entries if outcome in _ANSWERED]
        if any(b <= a for a, b in itertools.pairwise(numbers)):
            report.check_numbers_not_increasing += 1
        running = [e for e in entries if e[0] == "INITIATE" and e[2] == "RUNNING"]
        if running:
            recorded_at = running[0][3]
            late = [at for at in arrivals[key] if at > recorded_at]
            report.repeated_initiations_after_running += len(late) + len(running) - 1
            report.initiations_resent_before_running += (
                sum(1 for at in arrivals[key] if at <= recorded_at) - 1
            )

"""In-flight scale: 100,000 RUNNING tasks in one engine process, checks due over the next hour.

The tasks are written straight into the store through the store API (`TaskStore.create`, one
record per task as `Engine.submit` would build it, already RUNNING with the plugin's Task), so no
100,000 initiating RPCs are needed. Then `Engine.start` loads and schedules them, exactly as on a
restart. No check falls due during the measurement (the earliest is a minute away).

Figures, each in a fresh spawned process:
- RSS per in-flight task with MemoryStore: (RSS after the engine holds all tasks - RSS before any
  task existed) / N. Baselines in the same run: a bare heapq entry per task (what the scheduler
  itself adds) and an asyncio task sleeping per task (the design the engine avoids).
- Time to schedule: `Engine.start` on a MemoryStore holding N RUNNING tasks.
- SQLite resume: N tasks created in a SqliteStore file by one process; a new process opens the
  file and times `Engine.start` (read every unfinished row, rebuild the heap). Baseline: the bare
  `SELECT` of the same rows.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import os
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import Config, Row, Target, in_child, log, median, rss_bytes

TARGET = "127.0.0.1:9"  # never called: no check falls due while the benchmark runs
METHOD = "/asyncplugin.v1.PluginService/Invoke"


def _records(
    n: int,
    now: float,
    *,
    dues: list[float] | None = None,
    target: str = TARGET,
    deadline_s: float | None = 3600.0,
) -> list[Any]:
    """N RUNNING task records as the engine keeps them after a RUNNING answer.

    Each gets its own ids, options object and encoded Task (with its own job id), as
    `Engine.submit` and a RUNNING answer would leave them. Checks are due at `dues` (default:
    spread over the hour, none in the first minute).
    """
    from asyncplugin.engine import TaskOptions, TaskRecord
    from asyncplugin.protocol import TaskState, encode_payload
    from asyncplugin.v1 import task_pb2

    if dues is None:
        rng = random.Random(1)
        dues = [now + 60 + rng.random() * 3540 for _ in range(n)]
    deadline = now + deadline_s if deadline_s is not None else None
    payload = encode_payload({"input": "a tiny payload"})
    placeholder = "0" * 32
    status = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING)
    status.remote_status_input.update({"job_id": placeholder})
    template = status.SerializeToString()
    out = []
    for due in dues:
        out.append(
            TaskRecord(
                task_id=os.urandom(16).hex(),
                target=target,
                method=METHOD,
                state=TaskState.RUNNING,
                payload=payload,
                idempotency_key=os.urandom(16).hex(),
                options=TaskOptions(),
                create_time=now,
                update_time=now,
                start_time=now,
                next_check_time=due,
                deadline=deadline,
                check_count=1,
                status=template.replace(placeholder.encode(), os.urandom(16).hex().encode()),
            )
        )
    return out


def _settled_rss() -> int:
    gc.collect()
    return rss_bytes()


def memory_engine(n: int) -> dict[str, float]:
    """Child: RSS per task and time to schedule N RUNNING tasks on a MemoryStore engine."""
    return asyncio.run(_memory_engine(n))


async def _memory_engine(n: int) -> dict[str, float]:
    from asyncplugin.engine import Engine, MemoryStore

    _records(10, time.time())  # import and warm everything the records need
    store = MemoryStore()
    engine = Engine(store=store)
    before = _settled_rss()
    now = time.time()
    records = _records(n, now)
    # The list holding them costs 8 B a task; it is freed once the store holds the records.
    with_records = _settled_rss()
    t0 = time.perf_counter()
    for record in records:
        await store.create(record)
    created_s = time.perf_counter() - t0
    del records, record
    in_store = _settled_rss()
    t0 = time.perf_counter()
    await engine.start()
    start_s = time.perf_counter() - t0
    await asyncio.sleep(0)
    after = _settled_rss()
    pending = engine._scheduler.pending if engine._scheduler else 0
    await engine.stop()
    return {
        "bytes_per_task": (after - before) / n,
        "records_bytes": (with_records - before) / n,
        "store_bytes": (in_store - with_records) / n,
        "engine_bytes": (after - in_store) / n,
        "create_s": created_s,
        "schedule_s": start_s,
        "pending": float(pending),
    }


def heapq_baseline(n: int) -> dict[str, float]:
    """Child: RSS per (due, sequence, key) heap entry, the scheduler's own unit, and push time."""
    keys = [os.urandom(16).hex() for _ in range(n)]  # the ids exist in both designs
    rng = random.Random(1)
    now = time.time()
    dues = [now + 60 + rng.random() * 3540 for _ in range(n)]
    before = _settled_rss()
    heap: list[tuple[float, int, str]] = []
    t0 = time.perf_counter()
    for sequence, (due, key) in enumerate(zip(dues, keys, strict=True)):
        heapq.heappush(heap, (due, sequence, key))
    push_s = time.perf_counter() - t0
    after = _settled_rss()
    return {"bytes_per_task": (after - before) / n, "schedule_s": push_s}


def task_per_timer_baseline(n: int) -> dict[str, float]:
    """Child: RSS per asyncio task sleeping until its due time, and time to create them."""
    return asyncio.run(_task_per_timer(n))


async def _task_per_timer(n: int) -> dict[str, float]:
    rng = random.Random(1)
    delays = [60 + rng.random() * 3540 for _ in range(n)]
    before = _settled_rss()
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(asyncio.sleep(delay)) for delay in delays]
    await asyncio.sleep(0)  # every task starts and parks on its timer
    create_s = time.perf_counter() - t0
    after = _settled_rss()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"bytes_per_task": (after - before) / n, "schedule_s": create_s}


def sqlite_create(path: str, n: int) -> dict[str, float]:
    """Child: writes N RUNNING tasks into a SqliteStore through `TaskStore.create`."""
    return asyncio.run(_sqlite_create(path, n))


async def _sqlite_create(path: str, n: int) -> dict[str, float]:
    from asyncplugin.engine import SqliteStore

    store = SqliteStore(path)
    await store.open()
    records = _records(n, time.time())
    t0 = time.perf_counter()
    for record in records:
        await store.create(record)
    create_s = time.perf_counter() - t0
    await store.close()
    return {"create_s": create_s}


def sqlite_resume(path: str, n: int) -> dict[str, float]:
    """Child: a restarted engine on the file: `Engine.start` loads and schedules every task."""
    return asyncio.run(_sqlite_resume(path, n))


async def _sqlite_resume(path: str, n: int) -> dict[str, float]:
    from asyncplugin.engine import Engine, SqliteStore

    engine = Engine(store=SqliteStore(path))
    before = _settled_rss()
    t0 = time.perf_counter()
    await engine.start()
    resume_s = time.perf_counter() - t0
    after = _settled_rss()
    pending = engine._scheduler.pending if engine._scheduler else 0
    await engine.stop()
    if pending != n:
        raise RuntimeError(f"resumed {pending} tasks, expected {n}")
    return {"resume_s": resume_s, "bytes_per_task": (after - before) / n}


def sqlite_select_baseline(path: str) -> dict[str, float]:
    """Child: the floor for a resume: SELECT every unfinished row of the same file."""
    db = sqlite3.connect(path)
    t0 = time.perf_counter()
    rows = db.execute("SELECT * FROM tasks WHERE state IN (1, 2)").fetchall()
    select_s = time.perf_counter() - t0
    db.close()
    return {"select_s": select_s, "rows": float(len(rows))}


def run(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """Runs the section and returns its rows."""
    quick = config.quick
    n = 5_000 if quick else 100_000
    reps = config.repetitions()
    label = f"{n // 1000}k"
    log(f"scale: {label} in-flight tasks, memory ({reps} repetitions)")
    memory = [in_child(memory_engine, n) for _ in range(reps)]
    heap = [in_child(heapq_baseline, n) for _ in range(reps)]
    timers = in_child(task_per_timer_baseline, n)
    log(f"scale: {label} tasks in SQLite, then resume")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        path = str(Path(tmp) / "tasks.sqlite3")
        created = in_child(sqlite_create, path, n)
        resumes = [in_child(sqlite_resume, path, n) for _ in range(reps)]
        select = [in_child(sqlite_select_baseline, path) for _ in range(reps)]

    def med(runs: list[dict[str, float]], key: str) -> float:
        return median([r[key] for r in runs])

    rows = [
        Row(
            "2",
            f"RSS per in-flight task, {label} RUNNING, MemoryStore",
            med(memory, "bytes_per_task"),
            "B",
            target=Target("<= 1,024 B", "value", "<=", 1024),
            note="breakdown measured step by step in the same process (RSS after each step)",
        ),
        Row(
            "2",
            "  of which the record (TaskRecord, ids, options, encoded Task)",
            med(memory, "records_bytes"),
            "B",
        ),
        Row(
            "2", "  of which the store's index (MemoryStore dict)", med(memory, "store_bytes"), "B"
        ),
        Row(
            "2",
            "  of which the engine (its index, the scheduler's heap and live entries)",
            med(memory, "engine_bytes"),
            "B",
        ),
        Row(
            "2",
            "  for scale: one bare heapq entry (the scheduler's unit)",
            med(heap, "bytes_per_task"),
            "B",
        ),
        Row(
            "2",
            "  same, vs an asyncio task sleeping per timer",
            med(memory, "bytes_per_task"),
            "B",
            "asyncio.create_task(sleep) per task",
            timers["bytes_per_task"],
            ratio_is_less=True,
        ),
        Row(
            "2",
            f"time to schedule {label} (Engine.start, MemoryStore)",
            med(memory, "schedule_s"),
            "s",
            f"heappush x{label}",
            med(heap, "schedule_s"),
        ),
        Row(
            "2",
            f"resume {label} after restart (Engine.start, SQLite)",
            med(resumes, "resume_s"),
            "s",
            "bare SELECT of the same rows",
            med(select, "select_s"),
            target=Target("< 10 s", "value", "<", 10.0),
        ),
        Row(
            "2",
            f"RSS per resumed task ({label}, SqliteStore)",
            med(resumes, "bytes_per_task"),
            "B",
        ),
    ]
    data = {
        "n": n,
        "memory": memory,
        "heapq": heap,
        "task_per_timer": timers,
        "sqlite_create": created,
        "sqlite_resume": resumes,
        "sqlite_select": select,
    }
    return rows, data

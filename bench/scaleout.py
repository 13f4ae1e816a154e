"""Scale-out: status checks/s of 1, 2 and 4 engine workers sharing one PostgreSQL, against one
engine on SQLite in the same run, with the database's cost per check.

One plugin process answers every call RUNNING (`bench.plugins`, "bare"). Each worker is its own
spawned process: an `Engine` on a `PostgresStore` with `max_concurrent_rpcs = 64` that submits
256 tasks whose policy has 1 us intervals, so every check is due at once and the worker keeps its
leases (the next check is always within the horizon): every check is a plugin call, then a
fenced write of the task row and its history entry, batched with the other steps' writes (group
commit). The workers open their counting windows at the same wall-clock moment.

The PostgreSQL server is a throwaway cluster on this machine with fsync on and
`synchronous_commit = off` (a crash of the machine may lose the last commits, never corrupt; the
same promise as SQLite's WAL with synchronous=NORMAL that the baseline uses). Figures per check,
over the window: the CPU of the server's processes, the transactions it committed (each store
statement is one: round trips), and the WAL it wrote. The baseline is the same engine on a
SqliteStore (`bench.throughput.engine_client`). On a 2-core machine the workers, the plugin and
the server share the same two cores, so more workers cannot add much here: the figures that
carry to bigger machines are the costs per check (docs/scale-out.md projects from them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

from ._common import (
    Config,
    PluginProcess,
    Row,
    in_child,
    log,
    median,
    run_loop,
    saturating_policy,
)
from .throughput import METHOD, PAYLOAD, engine_client

CONCURRENCY = 64


def pg_worker(url: str, target: str, start_at: float, window_s: float) -> dict[str, float]:
    """Child process: one engine worker on PostgreSQL; checks and CPU in the window."""
    return run_loop(_pg_worker(url, target, start_at, window_s))


async def _pg_worker(url: str, target: str, start_at: float, window_s: float) -> dict[str, float]:
    from asyncplugin.engine import CallKind, Engine, TaskUpdate
    from asyncplugin.engine.store import LeaseTerms
    from asyncplugin.engine.store.postgres import PostgresStore

    policy = saturating_policy()
    counting = False
    checks = 0

    def on_change(update: TaskUpdate) -> None:
        nonlocal checks
        if counting:
            checks += sum(1 for check in update.checks if check.kind is CallKind.CHECK)

    store = PostgresStore(url, terms=LeaseTerms(lease_s=60.0, horizon_s=1.0, poll_interval_s=0.5))
    engine = Engine(
        store=store,
        policy=policy,
        on_change=on_change,
        max_concurrent_rpcs=CONCURRENCY,
        max_concurrent_rpcs_per_target=CONCURRENCY,
    )
    async with engine:
        await asyncio.gather(
            *(engine.submit(target, method=METHOD, payload=PAYLOAD) for _ in range(4 * CONCURRENCY))
        )
        await asyncio.sleep(max(0.0, start_at - time.time()))
        counting = True
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(window_s)
        counting = False
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"checks": float(checks), "rate": checks / elapsed, "cpu_s": cpu}


def _database_counters(url: str) -> tuple[int, int]:
    """(transactions committed or rolled back, WAL position in bytes) of the server."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            b"SELECT (SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database),"
            b" pg_current_wal_lsn() - '0/0'::pg_lsn"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _fresh_schema(admin_url: str, name: str) -> str:
    """A new empty schema on the server; the URL of a worker using it."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"'.encode())
    return f"{admin_url}?options=-csearch_path%3D{name}"


def _fleet_run(
    server: Any, url: str, target: str, workers: int, warmup_s: float, window_s: float
) -> dict[str, float]:
    """`workers` processes at once; their combined rate and the server's costs in the window."""
    start_at = time.time() + 2.5 + warmup_s  # spawning and submitting take ~2 s under load
    with concurrent.futures.ThreadPoolExecutor(workers + 1) as pool:
        runs = [
            pool.submit(in_child, pg_worker, url, target, start_at, window_s)
            for _ in range(workers)
        ]

        def server_window() -> tuple[float, int, int, float]:
            time.sleep(max(0.0, start_at - time.time()))
            cpu0, (tx0, wal0), t0 = server.cpu_s(), _database_counters(url), time.perf_counter()
            time.sleep(window_s)
            cpu1, (tx1, wal1) = server.cpu_s(), _database_counters(url)
            return cpu1 - cpu0, tx1 - tx0, wal1 - wal0, time.perf_counter() - t0

        observed = pool.submit(server_window)
        results = [run.result() for run in runs]
        db_cpu_s, transactions, wal_bytes, _ = observed.result()
    checks = sum(r["checks"] for r in results) or 1.0
    return {
        "rate": sum(r["rate"] for r in results),
        "checks": checks,
        "db_cpu_us": db_cpu_s / checks * 1e6,
        "round_trips": (transactions - 2) / checks,  # minus the two counter reads
        "wal_bytes": wal_bytes / checks,
        "client_cpu_us": sum(r["cpu_s"] for r in results) / checks * 1e6,
    }


def run(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """Runs the section; returns its rows and raw figures."""
    from tests.pg_server import PgServer

    quick = config.quick
    reps = config.reps if config.reps is not None else (1 if quick else 2)
    warmup_s, window_s = (0.15, 0.3) if quick else (1.0, 3.0)
    sizes = (1, 2, 4)
    runs: dict[str, list[dict[str, float]]] = {"sqlite": [], **{str(n): [] for n in sizes}}
    server = PgServer.start(crash_safe=True)
    try:
        with PluginProcess("bare") as plugin:
            for rep in range(reps):
                log(f"scale-out: repetition {rep + 1}/{reps}")
                runs["sqlite"].append(
                    in_child(
                        engine_client, plugin.target, "sqlite", CONCURRENCY, warmup_s, window_s,
                        plugin.pid, "asyncio",
                    )
                )  # fmt: skip
                for size in sizes:
                    url = _fresh_schema(server.url(), f"bench_{rep}_{size}")
                    log(f"scale-out: {size} worker(s) on PostgreSQL")
                    runs[str(size)].append(
                        _fleet_run(server, url, plugin.target, size, warmup_s, window_s)
                    )
    finally:
        server.stop()

    def figure(kind: str, name: str) -> float:
        return median([r[name] for r in runs[kind]])

    sqlite_rate = figure("sqlite", "rate")
    rows = [
        Row(
            "7",
            f"engine on PostgreSQL, {size} worker{'s' if size > 1 else ''}: status checks/s",
            figure(str(size), "rate"),
            "/s",
            "one engine on SqliteStore",
            sqlite_rate,
        )
        for size in sizes
    ]
    for size in (1, 4):
        rows.append(
            Row(
                "7",
                f"PostgreSQL server CPU per check, {size} worker{'s' if size > 1 else ''}",
                figure(str(size), "db_cpu_us"),
                "us",
            )
        )
    rows += [
        Row(
            "7",
            "round trips (transactions) per check, 4 workers",
            figure("4", "round_trips"),
            "",
            note="every store statement is one transaction; the batch writes make it < 1",
        ),
        Row("7", "WAL written per check, 4 workers", figure("4", "wal_bytes"), "B"),
        Row(
            "7",
            "worker CPU per check, 1 worker (engine + PostgresStore)",
            figure("1", "client_cpu_us"),
            "us",
            "engine + SqliteStore CPU per check",
            figure("sqlite", "client_cpu_us"),
        ),
    ]
    return rows, {"runs": runs}

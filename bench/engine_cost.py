"""The engine's CPU per status check, A/B between two source trees (issue 16, item 2).

Not part of `python -m bench`'s table: a focused tool for deciding whether an engine change
pays. Every figure is the CPU time of the engine's own process (`time.process_time`, so other
processes on a loaded machine do not count), divided by the status checks recorded.

Modes:
- `inproc`: an Engine with an in-process transport that answers every call RUNNING at once
  (after one loop turn, as a real call would suspend) with a pre-encoded answer: the engine's own
  Python per check (build, decode, validate, record, reschedule), without gRPC.
- `grpc`: the same Engine over real grpc.aio to the bare generated servicer (`bench.plugins`) in
  its own process, as `bench.throughput` measures it; `raw` is that section's raw client.
- `shared` (`shared-raw`): `bench.peers`' spread-out regime, the engine (the raw grpc.aio loop)
  polling N jobs of 2-12 s (default 2,000) on the shared schedule, 1 s x1.5 up to 20 s; CPU
  per call of the whole process and of its main thread, and the event loop's wake-ups per call.
- `resume`: a SqliteStore file with N RUNNING tasks due later in the hour (written once, as
  `bench.scale` writes them); each run times `Engine.start` on it, then one full pass of the
  cyclic collector (`gc.collect()`), the pause every full collection costs from then on.

Stores: `memory` or `sqlite` (a file in a fresh temporary folder). `inproc` and `grpc` run 4 x C
RUNNING tasks with 1 us intervals and C calls in flight (C = 64), so a due task always waits for
a slot; with `--spread N`, N tasks checked every 1 s +-20% instead.

A/B: `python -m bench.engine_cost --tree A=/tmp/ab/A/python --tree B=python --mode inproc
--store sqlite --reps 5` runs each measurement in a fresh interpreter whose `asyncplugin` comes
from the named tree (via PYTHONPATH; export a commit's tree with `git archive`), interleaved
A, B, B, A, A, B, ... and prints medians and the median of the paired ratios. `NAME=PATH@MODE`
runs one of them in another mode, e.g. `--tree raw=python@shared-raw` for the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METHOD = "/asyncplugin.v1.PluginService/Invoke"
PAYLOAD = {"input": "a tiny payload"}


def _answer() -> bytes:
    """The bare servicer's answer to a status check: RUNNING, a job id in the remote input."""
    from asyncplugin.v1 import plugin_pb2, task_pb2

    answer = plugin_pb2.InvokeResponse()
    answer.status.state = task_pb2.TASK_STATE_RUNNING
    answer.status.remote_status_input.update({"job_id": "0123456789abcdef0123456789abcdef"})
    return answer.SerializeToString()


class _InstantTransport:
    """Answers every call RUNNING after one loop turn (or `latency_s`); no gRPC."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self._answer = _answer()
        self._latency_s = latency_s

    async def call(
        self,
        target: str,
        method: str,
        request: bytes,
        *,
        timeout_s: float,
        metadata: Any = (),
    ) -> bytes:
        await asyncio.sleep(self._latency_s)
        return self._answer

    async def close(self) -> None:
        return None


async def _measure(
    mode: str,
    store_kind: str,
    concurrency: int,
    checks: int,
    window_s: float,
    target: str,
    spread: int = 0,
) -> dict[str, float]:
    from asyncplugin.engine import (
        CallKind,
        Engine,
        MemoryStore,
        PollingPolicy,
        SqliteStore,
        TaskStore,
        TaskUpdate,
    )

    interval_s = 1.0 if spread else 1e-6
    policy = PollingPolicy(
        initial_interval_s=interval_s,
        min_interval_s=interval_s,
        max_interval_s=interval_s,
        jitter=0.2 if spread else 0.0,
        max_checks=None,
        deadline_s=None,
    )
    counted = 0
    goal = -1
    reached = asyncio.Event()

    def on_change(update: TaskUpdate) -> None:
        nonlocal counted
        counted += sum(1 for check in update.checks if check.kind is CallKind.CHECK)
        if goal >= 0 and counted >= goal:
            reached.set()

    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        store: TaskStore = (
            SqliteStore(Path(tmp) / "tasks.sqlite3") if store_kind == "sqlite" else MemoryStore()
        )
        engine = Engine(
            store=store,
            policy=policy,
            on_change=on_change,
            max_concurrent_rpcs=concurrency,
            max_concurrent_rpcs_per_target=concurrency,
            transport=_InstantTransport(0.001 if spread else 0.0) if mode == "inproc" else None,
        )
        async with engine:
            for _ in range(spread or 4 * concurrency):
                await engine.submit(target, method=METHOD, payload=PAYLOAD)
            if mode == "inproc" and not spread:
                goal = counted + checks // 5  # warm-up
                await reached.wait()
                reached.clear()
                start, cpu0, wall0 = counted, time.process_time(), time.perf_counter()
                goal = start + checks
                await reached.wait()
            else:
                await asyncio.sleep(3.0 if spread else 0.7)
                start, cpu0, wall0 = counted, time.process_time(), time.perf_counter()
                await asyncio.sleep(window_s)
            done = counted - start
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
    return {"cpu_us": cpu / done * 1e6, "rate": done / wall, "checks": float(done)}


async def _resume(path: str) -> dict[str, float]:
    """`Engine.start` on a store of RUNNING tasks due later, then one full collector pass."""
    import gc

    from asyncplugin.engine import Engine, SqliteStore

    engine = Engine(store=SqliteStore(path), transport=_InstantTransport())
    t0 = time.perf_counter()
    await engine.start()
    start_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gc.collect()
    full_gc_ms = (time.perf_counter() - t0) * 1e3
    await engine.stop()
    return {"full_gc_ms": full_gc_ms, "start_s": start_s}


async def _write_store(path: str, n: int) -> None:
    """N RUNNING tasks due in the next hour (none in the first minute), through the store API."""
    from asyncplugin.engine import SqliteStore

    from .scale import _records

    store = SqliteStore(path)
    await store.open()
    for record in _records(n, time.time()):
        await store.create(record)
    await store.close()


def _shared(mode: str, target: str, operations: int) -> dict[str, float]:
    """`bench.peers`' spread-out regime: N jobs of 2-12 s polled on the shared schedule."""
    from .peer_clients import engine_client, raw_client
    from .peers import SHARED, job_durations

    client = engine_client if mode == "shared" else raw_client
    result = client(target, job_durations(operations, 2.0, 12.0), SHARED)
    calls = result["calls"]
    return {
        "cpu_us": result["cpu_s"] / calls * 1e6,
        "main_us": result["main_cpu_s"] / calls * 1e6,
        "wall_s": result["wall_s"],
        "calls": calls,
        "wakeups": result.get("wakeups", math.nan) / calls,
    }


def _one(args: argparse.Namespace) -> dict[str, float]:
    if args.mode in ("shared", "shared-raw"):
        return _shared(args.mode, args.target, args.operations)
    if args.mode == "resume":
        return asyncio.run(_resume(args.db))
    if args.mode == "raw":
        from .throughput import raw_client

        raw = raw_client(args.target, args.concurrency, 0.7, args.window, os.getpid(), "asyncio")
        return _raw_result(raw)
    return asyncio.run(
        _measure(
            args.mode,
            args.store,
            args.concurrency,
            args.checks,
            args.window,
            args.target,
            args.spread,
        )
    )


def _raw_result(result: dict[str, float]) -> dict[str, float]:
    return {"cpu_us": result["client_cpu_us"], "rate": result["rate"], "checks": result["calls"]}


def _run_tree(tree: str, argv: list[str]) -> dict[str, float]:
    """One run in a fresh interpreter on `tree` ("PATH" or "PATH@MODE": another mode)."""
    tree, _, mode = tree.partition("@")
    if mode:
        argv = [*argv, f"--mode={mode}"]
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve()), "GRPC_VERBOSITY": "ERROR"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.engine_cost", "--one", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"run on {tree} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _ab(args: argparse.Namespace, argv: list[str]) -> None:
    trees = dict(item.split("=", 1) for item in args.tree)
    names = list(trees)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    server = None
    tmp = None
    if args.mode == "resume":
        tmp = tempfile.TemporaryDirectory(prefix="bench-cost-")
        db = str(Path(tmp.name) / "tasks.sqlite3")
        asyncio.run(_write_store(db, args.tasks))
        argv = [*argv, "--db", db]
    if args.mode in ("grpc", "raw", "shared", "shared-raw"):
        from ._common import PluginProcess

        server = PluginProcess("bare-jobs" if args.mode.startswith("shared") else "bare")
        server.__enter__()
        argv = [*argv, "--target", server.target]
    try:
        for rep in range(args.reps):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                result = _run_tree(trees[name], argv)
                results[name].append(result)
                print(f"rep {rep + 1} {name}: {_fmt(result)}", flush=True)
    finally:
        if server is not None:
            server.__exit__(None, None, None)
        if tmp is not None:
            tmp.cleanup()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    base = names[0]
    for name in names:
        keys = results[name][0].keys()
        medians = {key: statistics.median(r[key] for r in results[name]) for key in keys}
        line = f"{name}: median {_fmt(medians)}"
        if name != base:
            ratios = {
                key: statistics.median(
                    a[key] / b[key] for a, b in zip(results[name], results[base], strict=True)
                )
                for key in keys
            }
            line += f"; paired ratio {name}/{base}: {_fmt(ratios, '.3f')}"
        print(line)


def _fmt(result: dict[str, float], spec: str = ".4g") -> str:
    return ", ".join(f"{key} {value:{spec}}" for key, value in result.items())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_cost", description=__doc__)
    parser.add_argument(
        "--mode",
        choices=("inproc", "grpc", "raw", "resume", "shared", "shared-raw"),
        default="inproc",
    )
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--checks", type=int, default=20_000, help="inproc: checks measured")
    parser.add_argument("--window", type=float, default=2.5, help="grpc: seconds measured")
    parser.add_argument(
        "--spread",
        type=int,
        default=0,
        help="N tasks checked every 1 s +-20%% (1 ms answers in-process) instead of back to back",
    )
    parser.add_argument("--tasks", type=int, default=100_000, help="resume: tasks in the store")
    parser.add_argument("--db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--operations", type=int, default=2_000, help="shared: operations")
    parser.add_argument("--target", default="127.0.0.1:1")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        help="NAME=PATH[@MODE] (A/B; @MODE runs that tree in another mode, e.g. a baseline)",
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args)))
        return
    argv = [
        f"--mode={args.mode}",
        f"--store={args.store}",
        f"--concurrency={args.concurrency}",
        f"--checks={args.checks}",
        f"--window={args.window}",
        f"--spread={args.spread}",
        f"--operations={args.operations}",
    ]
    if not args.tree:
        args.tree = ["current=python"]
    _ab(args, argv)


if __name__ == "__main__":
    main()

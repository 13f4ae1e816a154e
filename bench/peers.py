"""Peer comparison: the engine against google-api-core's pollers and the raw grpc.aio floor.

The same jobs for every client (`bench.plugins` "bare-jobs": a job ends `duration_s` of wall
time after it starts, uniform 2-12 s, seeded, the same list for every client; no check-after
hint) and the same work: start N jobs, poll each to its end, hold every result. The clients are
in `bench.peer_clients`: the engine, api-core's threaded `PollingFuture`, api-core's asyncio
`AsyncFuture`, and the raw grpc.aio loop (a semaphore of 64), the floor for any asyncio poller.

Two comparisons, side by side in one run:

- shared schedule (the spread-out regime): every client polls on ONE schedule, 1 s x1.5 up to
  20 s, +-20% (the engine's formula), so they send the same number of checks and differ only in
  mechanism; calls are spread over time rather than back to back. At 1,000, 2,000 and 10,000
  operations; the raw loop makes the same calls on the same schedule: the floor.
- own defaults: the engine, PollingFuture and AsyncFuture each on its own defaults, at 1,000
  and 10,000 operations: what a user gets without tuning (checks sent differ, and are shown).

Every client runs in a fresh spawned process against a fresh plugin process; repetitions are
interleaved (every client once per repetition) and the order rotates between repetitions, so no
client always goes first or always follows the same one. Figures are medians over repetitions.
Per run: CPU seconds of the client process (every thread) from its first call to its last
result, per call sent (initiating calls + status checks), the main thread's share (the rest is
grpc's own threads, or PollingFuture's operation threads), peak RSS above the idle process per
operation, wall time, checks sent, and the event loop's wake-ups per call.
"""

from __future__ import annotations

import random
from typing import Any

from ._common import Config, PluginProcess, Row, Target, in_child, log, median, rotated
from .peer_clients import CLIENTS, LABELS, Schedule

SHARED = Schedule()
"""The one schedule every client follows: 1 s x1.5 up to 20 s, +-20%."""
QUICK_SCHEDULE = Schedule(initial_s=0.05, multiplier=1.5, max_s=0.25, jitter=0.2, min_s=0.02)
QUICK_JOB_S = (0.02, 0.1)
QUICK_SIZE = 40

SHARED_SIZES = (1_000, 2_000, 10_000)
OWN_SIZES = (1_000, 10_000)
SHARED_KINDS = ("engine", "polling_future", "async_future", "raw")
OWN_KINDS = ("engine", "polling_future", "async_future")


def job_durations(n: int, low_s: float, high_s: float, seed: int = 5) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low_s, high_s) for _ in range(n)]


def summarize(runs: list[dict[str, Any]], n: int) -> dict[str, float]:
    """Medians over repetitions of the per-run figures (per call, per operation)."""

    def med(fn: Any) -> float:
        return median([fn(r) for r in runs])

    return {
        "runs": float(len(runs)),
        "cpu_s": med(lambda r: r["cpu_s"]),
        "cpu_us_per_call": med(lambda r: r["cpu_s"] / r["calls"] * 1e6),
        "main_us_per_call": med(lambda r: r["main_cpu_s"] / r["calls"] * 1e6),
        "other_us_per_call": med(lambda r: (r["cpu_s"] - r["main_cpu_s"]) / r["calls"] * 1e6),
        "rss_above_idle_per_op": med(lambda r: (r["peak_rss"] - r["idle_rss"]) / n),
        "peak_rss": med(lambda r: r["peak_rss"]),
        "wall_s": med(lambda r: r["wall_s"]),
        "checks": med(lambda r: r["checks"]),
        "calls": med(lambda r: r["calls"]),
        "wakeups_per_call": med(lambda r: r.get("wakeups", float("nan")) / r["calls"]),
        "switches_per_call": med(lambda r: r["voluntary_switches"] / r["calls"]),
    }


def measure(
    plan: list[tuple[str, str]],
    durations: list[float],
    schedule: Schedule,
    reps: int,
    *,
    fresh_server: bool,
    label: str,
    extra: dict[str, tuple[Any, ...]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Runs every (name, client kind) of `plan` once per repetition, order rotated.

    Each run is a fresh client process; with `fresh_server`, against a fresh plugin process too.
    `extra` gives a name's extra positional arguments after the schedule.
    """
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in plan}
    shared_server = None if fresh_server else PluginProcess("bare-jobs").__enter__()
    try:
        for rep in range(reps):
            for name, kind in rotated(plan, rep):
                own = name.endswith(":own")
                args = (None if own else schedule, *(extra or {}).get(name, ()))
                log(f"{label}: {name}, repetition {rep + 1}/{reps}")
                client = CLIENTS[kind]
                if shared_server is not None:
                    target = shared_server.target
                    runs[name].append(in_child(client, target, durations, *args, timeout_s=900))
                    continue
                with PluginProcess("bare-jobs") as server:
                    target = server.target
                    runs[name].append(in_child(client, target, durations, *args, timeout_s=900))
    finally:
        if shared_server is not None:
            shared_server.__exit__(None, None, None)
    return runs


def run(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """Runs the section and returns its rows and data (with the detail tables)."""
    quick = config.quick
    reps = config.repetitions()
    schedule = QUICK_SCHEDULE if quick else SHARED
    shared_sizes = config.peer_sizes or ((QUICK_SIZE,) if quick else SHARED_SIZES)
    own_sizes = config.own_sizes
    if own_sizes is None:
        own_sizes = (QUICK_SIZE,) if quick else OWN_SIZES
    low_s, high_s = QUICK_JOB_S if quick else (2.0, 12.0)
    data: dict[str, Any] = {
        "job_s": [low_s, high_s],
        "schedule": schedule.describe(),
        "reps": reps,
        "shared": {},
        "own": {},
        "tables": [],
    }
    rows: list[Row] = []
    for n in sorted(set(shared_sizes) | set(own_sizes)):
        plan = [(f"{kind}:shared", kind) for kind in SHARED_KINDS] if n in shared_sizes else []
        if n in own_sizes:
            plan += [(f"{kind}:own", kind) for kind in OWN_KINDS]
        durations = job_durations(n, low_s, high_s)
        runs = measure(
            plan, durations, schedule, reps, fresh_server=not quick, label=f"peers {n:,}"
        )
        for name, results in runs.items():
            kind, mode = name.split(":")
            data[mode].setdefault(str(n), {})[kind] = {
                **summarize(results, n),
                "raw_runs": results,
            }
    for n in shared_sizes:
        rows += _shared_rows(n, data["shared"][str(n)])
        data["tables"].append(
            _detail_table(
                f"peers, {n:,} operations, shared schedule ({schedule.describe()}), "
                f"medians of {reps}",
                data["shared"][str(n)],
            )
        )
    for n in own_sizes:
        rows += _own_rows(n, data["own"][str(n)])
        data["tables"].append(
            _detail_table(
                f"peers, {n:,} operations, each client on its own defaults, medians of {reps}",
                data["own"][str(n)],
            )
        )
    return rows, data


def _label(n: int) -> str:
    return f"{n:,}" if n < 10_000 else f"{n // 1000}k"


def _shared_rows(n: int, figures: dict[str, dict[str, float]]) -> list[Row]:
    engine, raw = figures["engine"], figures["raw"]
    pf, af = figures["polling_future"], figures["async_future"]
    big = n >= 10_000
    label = _label(n)
    less_cpu = (
        Target(">= 4x less", "ratio", ">=", 4.0) if big else Target("less", "ratio", ">", 1.0)
    )
    return [
        Row(
            "5",
            f"engine CPU per call, {label} ops, shared schedule",
            engine["cpu_us_per_call"],
            "us",
            LABELS["raw"],
            raw["cpu_us_per_call"],
            target=Target("<= 1.25x floor", "ratio", "<=", 1.25),
            note=f"checks: engine {engine['checks']:.0f}, raw {raw['checks']:.0f}, "
            f"PollingFuture {pf['checks']:.0f}, AsyncFuture {af['checks']:.0f}",
        ),
        Row(
            "5",
            "  same, vs the threaded PollingFuture",
            engine["cpu_us_per_call"],
            "us",
            LABELS["polling_future"],
            pf["cpu_us_per_call"],
            ratio_is_less=True,
            target=less_cpu,
        ),
        Row(
            "5",
            "  same, vs the asyncio AsyncFuture",
            engine["cpu_us_per_call"],
            "us",
            LABELS["async_future"],
            af["cpu_us_per_call"],
            ratio_is_less=True,
        ),
        Row(
            "5",
            f"peak RSS above idle per op, {label} ops, shared",
            engine["rss_above_idle_per_op"],
            "B",
            LABELS["polling_future"],
            pf["rss_above_idle_per_op"],
            ratio_is_less=True,
            target=Target(">= 10x less", "ratio", ">=", 10.0) if big else None,
        ),
        Row(
            "5",
            "  same, vs the asyncio AsyncFuture",
            engine["rss_above_idle_per_op"],
            "B",
            LABELS["async_future"],
            af["rss_above_idle_per_op"],
            ratio_is_less=True,
        ),
        Row(
            "5",
            f"  wall time, {label} ops, shared",
            engine["wall_s"],
            "s",
            LABELS["raw"],
            raw["wall_s"],
        ),
    ]


def _own_rows(n: int, figures: dict[str, dict[str, float]]) -> list[Row]:
    engine = figures["engine"]
    pf, af = figures["polling_future"], figures["async_future"]
    label = _label(n)
    return [
        Row(
            "5",
            f"engine client CPU, {label} ops, own defaults",
            engine["cpu_s"],
            "s",
            LABELS["polling_future"],
            pf["cpu_s"],
            ratio_is_less=True,
            note=f"checks: engine {engine['checks']:.0f}, PollingFuture {pf['checks']:.0f}, "
            f"AsyncFuture {af['checks']:.0f}; wall: engine {engine['wall_s']:.1f} s, "
            f"PollingFuture {pf['wall_s']:.1f} s, AsyncFuture {af['wall_s']:.1f} s",
        ),
        Row(
            "5",
            "  same, vs the asyncio AsyncFuture",
            engine["cpu_s"],
            "s",
            LABELS["async_future"],
            af["cpu_s"],
            ratio_is_less=True,
        ),
        Row(
            "5",
            f"peak RSS above idle per op, {label} ops, own defaults",
            engine["rss_above_idle_per_op"],
            "B",
            LABELS["polling_future"],
            pf["rss_above_idle_per_op"],
            ratio_is_less=True,
        ),
        Row(
            "5",
            "  same, vs the asyncio AsyncFuture",
            engine["rss_above_idle_per_op"],
            "B",
            LABELS["async_future"],
            af["rss_above_idle_per_op"],
            ratio_is_less=True,
        ),
    ]


def _detail_table(title: str, figures: dict[str, dict[str, float]]) -> str:
    """Every client's medians side by side: the section's full picture."""
    head = (
        "client",
        "CPU s",
        "us/call",
        "main thr",
        "other thr",
        "RSS/op",
        "wall s",
        "checks",
        "calls",
        "wakeups/call",
    )
    lines = [head]
    for kind in ("engine", "raw", "async_future", "polling_future"):
        if kind not in figures:
            continue
        f = figures[kind]
        wakeups = f["wakeups_per_call"]
        lines.append(
            (
                LABELS[kind],
                f"{f['cpu_s']:.2f}",
                f"{f['cpu_us_per_call']:,.0f}",
                f"{f['main_us_per_call']:,.0f}",
                f"{f['other_us_per_call']:,.0f}",
                f"{f['rss_above_idle_per_op'] / 1024:,.1f} KB",
                f"{f['wall_s']:.1f}",
                f"{f['checks']:,.0f}",
                f"{f['calls']:,.0f}",
                "-" if wakeups != wakeups else f"{wakeups:.1f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [title]
    for i, line in enumerate(lines):
        cells = [c.ljust(widths[0]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(line)]
        out.append("  " + "  ".join(cells).rstrip())
        if i == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(out)

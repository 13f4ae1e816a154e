"""Where the engine's client CPU per call goes, in the spread-out regime (issue 16).

Measured in the engine's own process on the shared schedule (see `bench.peers`), next to the
raw grpc.aio loop on the same schedule, every run in a fresh process, repetitions interleaved:

- threads: the process's CPU split into the main thread (the event loop: the engine's Python,
  asyncio, grpc.aio's Cython layer) and every other thread (grpc's C core: its poller and timer
  threads), from `time.thread_time()` against the process total;
- wake-ups: how many times the event loop's `select` returned, per call;
- A/B experiments that patch one mechanism in the measured process only (nothing under
  `python/` changes): `wakeup` replaces the scheduler's sleep (one timer through the injected clock)
  by a bare `loop.call_at` that sets its wake-up event;
  `no-history` gives the MemoryStore no check history (the record only); `no-lock` skips the
  engine's per-task `asyncio.Lock` (a benchmark task has one call in flight anyway); `uvloop`
  runs the engine as it ships on uvloop's event loop;
- a profile: cProfile, timed by the main thread's CPU clock, over the same run; its time is
  grouped by where it is spent (scheduler, steps, protocol checks, store, notifier, grpc.aio,
  asyncio, protobuf; a builtin's time goes to its callers' groups) and scaled to microseconds
  per call of the unprofiled run's main thread. cProfile's own overhead weighs on code that
  makes many small calls, so the shares are approximate.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

from ._common import Config, Row, log

VARIANTS = ("", "wakeup", "no-history", "no-lock")
"""The engine as it ships, then one patched mechanism each (see the module docstring)."""

BUCKETS = (
    ("asyncplugin/engine/scheduler.py", "scheduler: heap, sleeps and wake-ups, a task per call"),
    ("asyncplugin/engine/steps.py", "steps: one call's outcome and the next schedule"),
    ("asyncplugin/engine/conversation.py", "conversation: build the request, read the answer"),
    ("asyncplugin/engine/policy.py", "policy: next interval and its reason"),
    ("asyncplugin/engine/records.py", "records: TaskRecord/CheckRecord building"),
    ("asyncplugin/engine/store/", "store (MemoryStore)"),
    ("asyncplugin/engine/notify.py", "notifier"),
    ("asyncplugin/engine/transport.py", "transport: the grpc.aio call wrapper"),
    ("asyncplugin/engine/dispatch.py", "engine: per-task lock, fire, commit"),
    ("asyncplugin/engine/", "engine, other modules"),
    ("asyncplugin/protocol/", "protocol: answer validation, payloads, structs"),
    ("grpc/", "grpc.aio (Python and Cython)"),
    ("asyncio/", "asyncio: tasks, futures, callbacks, the loop"),
    ("dataclasses.py", "dataclasses.replace"),
    ("contextlib.py", "contextlib (the per-task lock's context manager)"),
    ("uuid.py", "uuid"),
    ("_weakrefset.py", "asyncio: tasks, futures, callbacks, the loop"),
    ("bench/", "the client's own code (the raw loop's coroutine, the submit loop)"),
    ("enum.py", "enum"),
    ("google/protobuf/", "protobuf (Python layer)"),
)


def apply_variant(variant: str) -> Callable[[], None]:
    """Patches one engine mechanism for this process; returns the undo."""
    if variant in ("", "profile"):
        return lambda: None
    if variant == "wakeup":
        from asyncplugin.engine.scheduler import Scheduler

        original = Scheduler._sleep_or_wake

        async def sleep_or_wake(self: Any, due: float) -> None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, due - self._clock.now())
            handle = loop.call_at(loop.time() + delay, self._wakeup.set)
            try:
                await self._wakeup.wait()
            finally:
                handle.cancel()

        Scheduler._sleep_or_wake = sleep_or_wake  # type: ignore[method-assign]
        return lambda: setattr(Scheduler, "_sleep_or_wake", original)
    if variant == "no-history":
        from asyncplugin.engine import MemoryStore

        original_record = MemoryStore.record

        async def record(self: Any, record: Any, *checks: Any) -> None:
            if record is not None:
                self._tasks[record.task_id] = record

        MemoryStore.record = record  # type: ignore[method-assign]
        return lambda: setattr(MemoryStore, "record", original_record)
    if variant == "no-lock":
        from asyncplugin.engine import Engine

        original_locked = Engine._locked

        @contextlib.asynccontextmanager
        async def locked(self: Any, task_id: str) -> Any:
            yield

        Engine._locked = locked  # type: ignore[method-assign, assignment]
        return lambda: setattr(Engine, "_locked", original_locked)
    raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS} or 'profile'")


def profiler() -> cProfile.Profile:
    """A profiler timed by this thread's CPU clock (sleeping in select costs nothing)."""
    return cProfile.Profile(time.thread_time)


def summarize_profile(profile: cProfile.Profile) -> dict[str, float]:
    """The profile's own time (tottime) per bucket, as fractions of the total."""
    stats = pstats.Stats(profile)
    totals: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, name), (_cc, _nc, tottime, _ct, callers) in raw.items():
        if filename == "~" and callers:
            # A builtin (getattr, Context.run, a Cython method...) is charged to its callers'
            # buckets in proportion to their calls: dataclasses.replace's getattr is replace's.
            calls = sum(entry[1] for entry in callers.values()) or 1
            for (caller_file, _, caller_name), entry in callers.items():
                bucket = _bucket(caller_file, caller_name)
                totals[bucket] = totals.get(bucket, 0.0) + tottime * entry[1] / calls
            continue
        bucket = _bucket(filename, name)
        totals[bucket] = totals.get(bucket, 0.0) + tottime
    whole = sum(totals.values()) or 1.0
    return {bucket: seconds / whole for bucket, seconds in totals.items()}


def top_functions(profile: cProfile.Profile, count: int = 25) -> list[tuple[str, float]]:
    """The `count` functions with the most own time, as (name, fraction of the total)."""
    stats = pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    whole = sum(entry[2] for entry in raw.values()) or 1.0
    ranked = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:count]
    return [
        (f"{_short(filename)}:{line}({name})", entry[2] / whole)
        for (filename, line, name), entry in ranked
    ]


def _short(filename: str) -> str:
    path = filename.replace("\\", "/")
    for marker in ("site-packages/", "python3.11/", "python/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _bucket(filename: str, name: str) -> str:
    path = filename.replace("\\", "/")
    for fragment, label in BUCKETS:
        if fragment in path:
            return label
    if filename == "~":  # a builtin: name it by its owner
        if "grpc" in name or "cygrpc" in name:
            return "grpc.aio (Python and Cython)"
        if "protobuf" in name or "upb" in name or "Message" in name:
            return "protobuf (C: parse, serialize, fields)"
        if "select" in name or "epoll" in name:
            return "asyncio: tasks, futures, callbacks, the loop"
        return "other builtins"
    return "other Python"


SIZE = 2_000


def run(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """Runs the section: the breakdown rows, and the profile as a detail table."""
    from .peer_clients import LABELS
    from .peers import (
        QUICK_JOB_S,
        QUICK_SCHEDULE,
        QUICK_SIZE,
        SHARED,
        job_durations,
        measure,
        summarize,
    )

    quick = config.quick
    reps = config.repetitions()
    n = config.attribution_size or (QUICK_SIZE if quick else SIZE)
    schedule = QUICK_SCHEDULE if quick else SHARED
    durations = job_durations(n, *(QUICK_JOB_S if quick else (2.0, 12.0)))
    plan = [("raw", "raw")] + [(f"engine:{v or 'as-is'}", "engine") for v in VARIANTS]
    extra = {f"engine:{v or 'as-is'}": ("asyncio", v) for v in VARIANTS}
    if not quick:  # the smoke run covers the engine on uvloop in `throughput`
        plan.append(("engine:uvloop", "engine"))
        extra["engine:uvloop"] = ("uvloop", "")
    runs = measure(
        plan,
        durations,
        schedule,
        reps,
        fresh_server=not quick,
        label=f"attribution {n:,}",
        extra=extra,
    )
    figures = {name: summarize(results, n) for name, results in runs.items()}
    log(f"attribution {n:,}: the engine and the raw loop under cProfile")
    profiled = measure(
        [("engine:profile", "engine"), ("raw:profile", "raw")],
        durations,
        schedule,
        1,
        fresh_server=not quick,
        label=f"attribution {n:,}",
        extra={"engine:profile": ("asyncio", "profile"), "raw:profile": ("asyncio", "profile")},
    )
    engine_profile, raw_profile = profiled["engine:profile"][0], profiled["raw:profile"][0]
    engine, raw = figures["engine:as-is"], figures["raw"]
    label = f"{n:,} ops, shared schedule"
    rows = [
        Row(
            "8",
            f"engine CPU per call, {label}",
            engine["cpu_us_per_call"],
            "us",
            LABELS["raw"],
            raw["cpu_us_per_call"],
        ),
        Row(
            "8",
            "  main thread (event loop, Python) per call",
            engine["main_us_per_call"],
            "us",
            "raw loop's main thread",
            raw["main_us_per_call"],
        ),
        Row(
            "8",
            "  other threads (grpc core) per call",
            engine["other_us_per_call"],
            "us",
            "raw loop's other threads",
            raw["other_us_per_call"],
        ),
        Row(
            "8",
            "  event-loop wake-ups per call",
            engine["wakeups_per_call"],
            "n",
            "raw loop's wake-ups per call",
            raw["wakeups_per_call"],
        ),
    ]
    names = {
        "uvloop": "A/B: the engine on uvloop",
        "wakeup": "A/B: scheduler sleeps on one call_at",
        "no-history": "A/B: MemoryStore keeps no check history",
        "no-lock": "A/B: no per-task asyncio.Lock",
    }
    for variant, text in names.items():
        if f"engine:{variant}" not in figures:
            continue
        rows.append(
            Row(
                "8",
                f"  {text}",
                figures[f"engine:{variant}"]["cpu_us_per_call"],
                "us",
                "the engine as it ships",
                engine["cpu_us_per_call"],
                ratio_is_less=True,
            )
        )
    share: dict[str, float] = engine_profile["profile"]
    raw_share: dict[str, float] = raw_profile["profile"]
    main_us, raw_main_us = engine["main_us_per_call"], raw["main_us_per_call"]
    lines = [
        f"attribution, {label}: the main thread under cProfile (timed by its CPU clock), own "
        "time per bucket as a share of the profile and scaled to the unprofiled main thread's "
        f"us per call (engine {main_us:,.0f} us, raw loop {raw_main_us:,.0f} us)",
        f"  {'engine':>17}  {'raw loop':>17}  bucket",
    ]
    for bucket in sorted(set(share) | set(raw_share), key=lambda b: -share.get(b, 0.0)):
        mine, theirs = share.get(bucket, 0.0), raw_share.get(bucket, 0.0)
        lines.append(
            f"  {mine:6.1%} {mine * main_us:7,.1f} us  "
            f"{theirs:6.1%} {theirs * raw_main_us:7,.1f} us  {bucket}"
        )
    lines.append("  the engine's top functions by own time:")
    for name, fraction in engine_profile["top"][:15]:
        lines.append(f"  {fraction:6.1%}  {name}")
    data = {
        "n": n,
        "schedule": schedule.describe(),
        "figures": figures,
        "profile": share,
        "raw_profile": raw_share,
        "top": engine_profile["top"],
        "raw_runs": runs,
        "tables": ["\n".join(lines)],
    }
    return rows, data

"""Status-check throughput: the engine against a raw grpc.aio client, the SDK against bare grpc.

The server is a separate spawned process (`bench.plugins`) that answers every call RUNNING. Each
client runs in its own spawned process, so the two sides use the machine's two cores.

- raw: C coroutines, each calling the unary method in a loop with the same request bytes the
  engine sends on a status check (pre-encoded once; the answer's bytes are not decoded). This is
  the floor: grpc.aio's own cost.
- engine: `Engine` with `max_concurrent_rpcs = C` and 4*C RUNNING tasks whose policy has 1 us
  intervals, so a due task is always waiting for a slot: every check is built, sent, decoded,
  validated, recorded in the store (MemoryStore or SqliteStore) and rescheduled.
- SDK vs bare: the raw client at the same concurrency against the `PluginServer` serving an
  `AsyncPlugin`, and against the bare generated servicer.
- uvloop: the same SDK server served on uvloop, and the engine client run on uvloop, each
  against its asyncio twin in the same run.

Each run warms up, then counts completed calls in a fixed window, along with the CPU seconds both
processes used in it. Runs alternate between the configurations (the order rotated every
repetition) and repeat; the table quotes medians and the median of the per-repetition ratios.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grpc import aio

from ._common import (
    Config,
    PluginProcess,
    Row,
    Target,
    in_child,
    log,
    median,
    process_cpu_s,
    rotated,
    run_loop,
    saturating_policy,
)

METHOD = "/asyncplugin.v1.PluginService/Invoke"
PAYLOAD = {"input": "a tiny payload"}


def sample_request() -> bytes:
    """A status-check request exactly as the engine encodes one (check 5 of a RUNNING task)."""
    import uuid

    from asyncplugin.engine.conversation import build_request
    from asyncplugin.engine.records import CallKind, TaskRecord
    from asyncplugin.protocol import TaskState, encode_payload
    from asyncplugin.v1 import task_pb2

    status = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING)
    status.remote_status_input.update({"job_id": uuid.uuid4().hex})
    now = time.time()
    record = TaskRecord(
        task_id=uuid.uuid4().hex,
        target="127.0.0.1:1",
        method=METHOD,
        state=TaskState.RUNNING,
        payload=encode_payload(PAYLOAD),
        idempotency_key=uuid.uuid4().hex,
        create_time=now,
        update_time=now,
        start_time=now,
        next_check_time=now,
        check_count=4,
        status=status.SerializeToString(),
    )
    return build_request(
        record, kind=CallKind.CHECK, check_number=5, max_retries=8, engine_name="bench"
    )


class _Window:
    """CPU seconds of this process and of the server between `open` and `close`."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.count = 0
        self.counting = False

    def open(self) -> None:
        self.count = 0
        self.counting = True
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        self._s0 = process_cpu_s(self.server_pid)

    def close(self) -> dict[str, float]:
        self.counting = False
        elapsed = time.perf_counter() - self._t0
        client = time.process_time() - self._c0
        server = process_cpu_s(self.server_pid) - self._s0
        if self.count == 0:
            raise RuntimeError(
                f"no call ended in the {elapsed:.2f} s window: the machine is too loaded to measure"
            )
        calls = self.count
        return {
            "rate": self.count / elapsed,
            "calls": float(self.count),
            "client_cpu_us": client / calls * 1e6,
            "server_cpu_us": server / calls * 1e6,
        }


def raw_client(
    target: str, concurrency: int, warmup_s: float, window_s: float, server_pid: int, loop: str
) -> dict[str, float]:
    """Child process: C coroutines calling the method back to back; calls/s in the window."""
    return run_loop(_raw(target, concurrency, warmup_s, window_s, server_pid), loop)


async def _raw(
    target: str, concurrency: int, warmup_s: float, window_s: float, server_pid: int
) -> dict[str, float]:
    request = sample_request()
    window = _Window(server_pid)
    stop = False
    async with aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        # One call first, as the engine's client initiates its tasks before its warm-up: a cold
        # server's first answers must not fall in (or, on a loaded machine, fill) the window.
        await call(request, timeout=10)

        async def worker() -> None:
            while not stop:
                await call(request, timeout=10)
                if window.counting:
                    window.count += 1

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(warmup_s)
        window.open()
        await asyncio.sleep(window_s)
        result = window.close()
        stop = True
        await asyncio.gather(*workers)
    return result


def engine_client(
    target: str,
    store: str,
    concurrency: int,
    warmup_s: float,
    window_s: float,
    server_pid: int,
    loop: str,
    telemetry: str = "",
) -> dict[str, float]:
    """Child process: an Engine polling 4*C RUNNING tasks with 1 us intervals; checks/s.

    With `telemetry` ("all" or "sampled", see `bench.observability.engine_telemetry`), the
    engine traces its calls (spans batched to an exporter that drops them) and keeps its
    Prometheus metrics, scraped once a second as a Prometheus server would.
    """
    return run_loop(
        _engine(target, store, concurrency, warmup_s, window_s, server_pid, telemetry), loop
    )


async def _engine(
    target: str,
    store_kind: str,
    concurrency: int,
    warmup_s: float,
    window_s: float,
    pid: int,
    telemetry: str = "",
) -> dict[str, float]:
    from asyncplugin.engine import (
        CallKind,
        Engine,
        MemoryStore,
        SqliteStore,
        TaskStore,
        TaskUpdate,
    )

    policy = saturating_policy()
    window = _Window(pid)

    def on_change(update: TaskUpdate) -> None:
        if window.counting:
            window.count += sum(1 for check in update.checks if check.kind is CallKind.CHECK)

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        store: TaskStore = (
            SqliteStore(Path(tmp) / "tasks.sqlite3") if store_kind == "sqlite" else MemoryStore()
        )
        # With a single plugin both bounds (all calls, calls per target) are set to C, so the
        # engine and the raw client have the same number of calls in flight.
        engine_telemetry_ = None
        scrape = None
        if telemetry:
            from .observability import engine_telemetry

            engine_telemetry_, scrape = engine_telemetry(sampled=telemetry == "sampled")
        engine = Engine(
            store=store,
            policy=policy,
            on_change=on_change,
            max_concurrent_rpcs=concurrency,
            max_concurrent_rpcs_per_target=concurrency,
            telemetry=engine_telemetry_,
        )
        async with engine:
            for _ in range(4 * concurrency):
                await engine.submit(target, method=METHOD, payload=PAYLOAD)
            await asyncio.sleep(warmup_s)
            window.open()
            if scrape is None:
                await asyncio.sleep(window_s)
            else:
                ends = time.perf_counter() + window_s
                while (left := ends - time.perf_counter()) > 0:
                    await asyncio.sleep(min(1.0, left))
                    scrape()
            result = window.close()
    return result


def run(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """Runs the section; returns its rows and the data for the throughput-vs-concurrency plot."""
    quick = config.quick
    reps = config.repetitions()
    warmup_s, window_s = (0.2, 0.5) if quick else (0.7, 2.5)
    concurrency = 64
    sweep = [] if quick else [1, 4, 16, 256]
    kinds = ("raw", "memory", "sqlite", "sdk", "sdk_uvloop", "memory_uvloop")
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    curve: dict[str, dict[int, float]] = {"raw": {}, "memory": {}}
    with (
        PluginProcess("bare") as bare,
        PluginProcess("sdk") as sdk,
        PluginProcess("sdk", loop="uvloop") as sdk_uv,
    ):
        args = (concurrency, warmup_s, window_s)
        plan: list[tuple[str, Callable[[], dict[str, float]]]] = [
            ("raw", lambda: in_child(raw_client, bare.target, *args, bare.pid, "asyncio")),
            (
                "memory",
                lambda: in_child(engine_client, bare.target, "memory", *args, bare.pid, "asyncio"),
            ),
            (
                "sqlite",
                lambda: in_child(engine_client, bare.target, "sqlite", *args, bare.pid, "asyncio"),
            ),
            ("sdk", lambda: in_child(raw_client, sdk.target, *args, sdk.pid, "asyncio")),
            (
                "sdk_uvloop",
                lambda: in_child(raw_client, sdk_uv.target, *args, sdk_uv.pid, "asyncio"),
            ),
            (
                "memory_uvloop",
                lambda: in_child(engine_client, bare.target, "memory", *args, bare.pid, "uvloop"),
            ),
        ]
        for rep in range(reps):
            log(f"throughput: repetition {rep + 1}/{reps} at {concurrency} in flight")
            for kind, measure in rotated(plan, rep):
                runs[kind].append(measure())
        curve["raw"][concurrency] = median([r["rate"] for r in runs["raw"]])
        curve["memory"][concurrency] = median([r["rate"] for r in runs["memory"]])
        for level in sweep:
            log(f"throughput: {level} in flight (plot)")
            args = (level, 0.5, 1.5)
            curve["raw"][level] = in_child(raw_client, bare.target, *args, bare.pid, "asyncio")[
                "rate"
            ]
            curve["memory"][level] = in_child(
                engine_client, bare.target, "memory", *args, bare.pid, "asyncio"
            )["rate"]

    def rate(kind: str) -> float:
        return median([r["rate"] for r in runs[kind]])

    def paired(kind: str, base: str) -> float:
        return median([a["rate"] / b["rate"] for a, b in zip(runs[kind], runs[base], strict=True)])

    raw_rate = rate("raw")
    rows = []
    for kind, label, threshold in (("memory", "MemoryStore", 0.8), ("sqlite", "SqliteStore", 0.8)):
        row = Row(
            "1",
            f"engine+{label} status checks/s, {concurrency} in flight",
            rate(kind),
            "/s",
            "raw grpc.aio unary, same server",
            raw_rate,
            target=Target(f">= {threshold:.2f}x raw", "ratio", ">=", threshold),
            note=f"paired-ratio median {paired(kind, 'raw'):.2f}x",
        )
        rows.append(row)
    rows.append(
        Row(
            "1",
            f"SDK PluginServer calls/s, {concurrency} in flight",
            rate("sdk"),
            "/s",
            "bare generated servicer",
            raw_rate,
            target=Target(">= 0.90x bare", "ratio", ">=", 0.9),
            note=f"paired-ratio median {paired('sdk', 'raw'):.2f}x",
        )
    )
    cpu = {
        kind: {
            "client_cpu_us": median([r["client_cpu_us"] for r in runs[kind]]),
            "server_cpu_us": median([r["server_cpu_us"] for r in runs[kind]]),
        }
        for kind in runs
    }
    rows.append(
        Row(
            "1",
            "engine+MemoryStore client CPU per check",
            cpu["memory"]["client_cpu_us"],
            "us",
            "raw grpc.aio client CPU per call",
            cpu["raw"]["client_cpu_us"],
            target=Target("<= 1.25x raw", "ratio", "<=", 1.25),
        )
    )
    rows.append(
        Row(
            "1",
            "engine+SqliteStore client CPU per check",
            cpu["sqlite"]["client_cpu_us"],
            "us",
            "raw grpc.aio client CPU per call",
            cpu["raw"]["client_cpu_us"],
            target=Target("<= 1.25x raw", "ratio", "<=", 1.25),
        )
    )
    rows.append(
        Row(
            "1",
            "SDK server CPU per call",
            cpu["sdk"]["server_cpu_us"],
            "us",
            "bare servicer CPU per call",
            cpu["raw"]["server_cpu_us"],
        )
    )
    rows.append(
        Row(
            "1",
            "SDK server CPU per call, served on uvloop",
            cpu["sdk_uvloop"]["server_cpu_us"],
            "us",
            "same server on asyncio's loop",
            cpu["sdk"]["server_cpu_us"],
            ratio_is_less=True,
            note=f"calls/s on uvloop {rate('sdk_uvloop'):,.0f}, on asyncio {rate('sdk'):,.0f}",
        )
    )
    rows.append(
        Row(
            "1",
            "engine+MemoryStore client CPU per check, on uvloop",
            cpu["memory_uvloop"]["client_cpu_us"],
            "us",
            "same engine on asyncio's loop",
            cpu["memory"]["client_cpu_us"],
            ratio_is_less=True,
            note=f"checks/s on uvloop {rate('memory_uvloop'):,.0f}, on asyncio "
            f"{rate('memory'):,.0f}",
        )
    )
    data = {
        "runs": runs,
        "cpu": cpu,
        "curve": {kind: dict(sorted(points.items())) for kind, points in curve.items()},
    }
    return rows, data

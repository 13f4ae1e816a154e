"""Peer comparison: N concurrent operations, google-api-core's PollingFuture against the engine.

The same plugin (`bench.plugins` "jobs": the SDK serving jobs that end `duration_s` of wall time
after they start, no check-after hint) in its own process; each client in its own fresh process;
the same N job durations (uniform 2-12 s, seeded) for both, so both clients do the same work:
start N jobs, poll each to its end, hold every result.

- google-api-core: what a user of that library writes. A `PollingFuture` subclass whose `done()`
  sends one status check through the generated stub on a sync grpc channel; one thread per
  operation, each sending the initiating call and then blocking in `future.result()` with the
  library's default polling (`DEFAULT_POLLING`: checks at once, then sleeps uniform(0, cap) with
  the cap 1 s x1.5 up to 20 s).
- engine: one `Engine` (MemoryStore, default policy and `max_concurrent_rpcs`), `submit` N tasks,
  then `wait` for all of them.

Measured in each client process: CPU seconds (user + system, every thread) from the first
initiating call to the last result, and peak RSS (ru_maxrss; the process is fresh, so this is
the peak of this run) along with the RSS before the work started (interpreter + grpc).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

from ._common import (
    PluginProcess,
    Row,
    Target,
    cpu_s,
    in_child,
    log,
    peak_rss_bytes,
    rss_bytes,
)

METHOD = "/asyncplugin.v1.PluginService/Invoke"


def job_durations(n: int, low_s: float, high_s: float, seed: int = 5) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low_s, high_s) for _ in range(n)]


def api_core_client(target: str, durations: list[float]) -> dict[str, float]:
    """Child: one thread per operation, each polled by a PollingFuture with default polling."""
    import grpc
    from google.api_core.future import polling

    from asyncplugin.protocol import encode_payload
    from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc

    class PluginOperation(polling.PollingFuture):
        """An asynchronous plugin call seen as a google-api-core long-running operation."""

        def __init__(self, stub: Any, payload: bytes, key: str, first: Any) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self._stub = stub
            self._payload = payload
            self._key = key
            self._status = first.status
            self.checks = 0

        def done(self, retry: Any = None) -> bool:
            if self._result_set:
                return True
            self.checks += 1
            request = plugin_pb2.InvokeRequest(
                data=self._payload,
                is_status_check=True,
                status=self._status,
                context=plugin_pb2.RequestContext(
                    idempotency_key=self._key, check_number=self.checks
                ),
            )
            answer = self._stub.Invoke(request, timeout=30)
            if answer.HasField("data"):
                self.set_result(answer.data)  # type: ignore[no-untyped-call]
                return True
            self._status = answer.status
            return False

        def cancel(self) -> bool:
            return False

        def cancelled(self) -> bool:
            return False

    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = plugin_pb2_grpc.PluginServiceStub(channel)
    results: list[Any] = [None] * len(durations)
    checks = [0] * len(durations)
    errors: list[BaseException] = []

    def operation(i: int, duration_s: float) -> None:
        try:
            payload = encode_payload({"duration_s": duration_s})
            key = f"op-{i}"
            first = stub.Invoke(
                plugin_pb2.InvokeRequest(
                    data=payload, context=plugin_pb2.RequestContext(idempotency_key=key)
                ),
                timeout=60,
            )
            future = PluginOperation(stub, payload, key, first)
            results[i] = future.result()  # type: ignore[no-untyped-call]
            checks[i] = future.checks
        except BaseException as err:  # reported to the parent below
            errors.append(err)

    idle_rss = rss_bytes()
    cpu0, t0 = cpu_s(), time.perf_counter()
    threads = [
        threading.Thread(target=operation, args=(i, d), daemon=True)
        for i, d in enumerate(durations)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu, wall = cpu_s() - cpu0, time.perf_counter() - t0
    channel.close()
    if errors:
        raise RuntimeError(f"{len(errors)} operations failed, first: {errors[0]!r}")
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "peak_rss": float(peak_rss_bytes()),
        "idle_rss": float(idle_rss),
        "checks": float(sum(checks)),
        "done": float(sum(1 for r in results if r is not None)),
    }


def engine_client(target: str, durations: list[float]) -> dict[str, float]:
    """Child: one Engine with default settings submits N tasks and waits for all of them."""
    return asyncio.run(_engine(target, durations))


async def _engine(target: str, durations: list[float]) -> dict[str, float]:
    from asyncplugin.engine import CallKind, Engine, MemoryStore, TaskUpdate
    from asyncplugin.protocol import TaskState

    checks = 0

    def on_change(update: TaskUpdate) -> None:
        nonlocal checks
        checks += sum(1 for check in update.checks if check.kind is CallKind.CHECK)

    engine = Engine(store=MemoryStore(), on_change=on_change)
    await engine.start()
    idle_rss = rss_bytes()
    cpu0, t0 = cpu_s(), time.perf_counter()
    ids = [await engine.submit(target, method=METHOD, payload={"duration_s": d}) for d in durations]
    records = await asyncio.gather(*(engine.wait(task_id) for task_id in ids))
    cpu, wall = cpu_s() - cpu0, time.perf_counter() - t0
    await engine.stop()
    done = sum(1 for r in records if r.state is TaskState.SUCCEEDED)
    if done != len(durations):
        raise RuntimeError(f"only {done} of {len(durations)} tasks succeeded")
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "peak_rss": float(peak_rss_bytes()),
        "idle_rss": float(idle_rss),
        "checks": float(checks),
        "done": float(done),
    }


def run(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    """Runs the section and returns its rows."""
    sizes = [200] if quick else [1_000, 10_000]
    low_s, high_s = (1.0, 3.0) if quick else (2.0, 12.0)
    rows: list[Row] = []
    data: dict[str, Any] = {"job_s": [low_s, high_s]}
    with PluginProcess("jobs") as server:
        for n in sizes:
            durations = job_durations(n, low_s, high_s)
            log(f"peers: {n:,} operations, google-api-core PollingFuture (a thread each)")
            api = in_child(api_core_client, server.target, durations, timeout_s=600)
            log(f"peers: {n:,} operations, engine")
            eng = in_child(engine_client, server.target, durations, timeout_s=600)
            data[str(n)] = {"api_core": api, "engine": eng}
            label = f"{n:,}" if n < 10_000 else f"{n // 1000}k"
            big = n >= 10_000
            rows.append(
                Row(
                    "5",
                    f"client CPU, {label} operations polled to the end",
                    eng["cpu_s"],
                    "s",
                    "google-api-core PollingFuture",
                    api["cpu_s"],
                    ratio_is_less=True,
                    target=Target(">= 10x less", "ratio", ">=", 10.0) if big else None,
                    note=f"checks: engine {eng['checks']:.0f}, api-core {api['checks']:.0f}",
                )
            )
            rows.append(
                Row(
                    "5",
                    f"client peak RSS, {label} operations",
                    eng["peak_rss"] / 2**20,
                    "MB",
                    "google-api-core PollingFuture",
                    api["peak_rss"] / 2**20,
                    ratio_is_less=True,
                    target=Target(">= 10x less", "ratio", ">=", 10.0) if big else None,
                )
            )
            rows.append(
                Row(
                    "5",
                    f"  peak RSS above the idle process, {label} operations",
                    (eng["peak_rss"] - eng["idle_rss"]) / 2**20,
                    "MB",
                    "google-api-core PollingFuture",
                    (api["peak_rss"] - api["idle_rss"]) / 2**20,
                    ratio_is_less=True,
                )
            )
            rows.append(
                Row(
                    "5",
                    f"  status checks sent, {label} operations",
                    eng["checks"],
                    "n",
                    "google-api-core PollingFuture",
                    api["checks"],
                    ratio_is_less=True,
                )
            )
    return rows, data

"""The SDK plugin server's CPU per call, A/B between source trees, and its profile.

`python -m bench.sdk_cost [--trees DIR,DIR] [--calls N] [--rounds R] [--kinds sdk,bare]` serves
each kind ("sdk": `AlwaysRunning` on `PluginServer`; "bare": the generated servicer) from each
tree's `python/` directory in a fresh process, drives `--calls` status checks at 64 in flight
with the raw grpc.aio client after a warm-up, and reads the server process's CPU seconds over
exactly those calls. Rounds interleave the configurations (order rotated); the table gives each
one's median CPU per call. CPU time, not wall time: the machine may be shared.

`--profile FILE` instead serves the first of `--kinds` from this tree under cProfile and writes
its stats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grpc import aio

from ._common import median, process_cpu_s

ROOT = Path(__file__).resolve().parents[1]
METHOD = "/asyncplugin.v1.PluginService/Invoke"


async def _serve(kind: str) -> None:
    import grpc

    from asyncplugin.plugin import PluginServer
    from asyncplugin.v1 import plugin_pb2_grpc

    from .plugins import SERVER_OPTIONS, AlwaysRunning, BareServicer

    loop = asyncio.get_running_loop()
    if kind == "bare":
        server = grpc.aio.server(options=SERVER_OPTIONS)
        plugin_pb2_grpc.add_PluginServiceServicer_to_server(BareServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
    else:
        sdk = PluginServer(AlwaysRunning(), port=0, grpc_options=SERVER_OPTIONS)
        spent = _time_handle(sdk)
        port = await sdk.start()
    print(port, flush=True)
    gc_time = _gc_timer() if os.environ.get("SDK_COST_GC") else None
    await loop.run_in_executor(None, sys.stdin.readline)  # the warm-up is over
    if kind != "bare":
        spent[:] = [0, 0]
    if gc_time is not None:
        gc_time.clear()
    print("marked", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # until the driver says "stop"
    if gc_time is not None:
        for gen in range(3):
            times = [t for g, t in gc_time if g == gen]
            print(f"gc gen{gen}: {len(times)} runs, {sum(times) / 1e6:.1f} ms", file=sys.stderr)
    if kind != "bare":  # the time in `handle` over the calls since the driver said "mark"
        print(f"{spent[0] / max(spent[1], 1) / 1e3:.2f}", flush=True)


def _time_handle(sdk: Any) -> list[int]:
    """Counts the thread CPU time spent in the dispatcher's `handle` (the bench plugin never
    suspends, so the time between entering and leaving is all its own): [ns, calls]."""
    dispatcher = sdk._dispatcher
    handle = dispatcher.handle
    spent = [0, 0]

    async def timed(data: bytes, context: Any) -> bytes:
        start = time.thread_time_ns()
        try:
            return await handle(data, context)  # type: ignore[no-any-return]
        finally:
            spent[0] += time.thread_time_ns() - start
            spent[1] += 1

    dispatcher.handle = timed
    return spent


def _gc_timer() -> list[tuple[int, int]]:
    import gc

    runs: list[tuple[int, int]] = []
    started = [0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time_ns()
        else:
            runs.append((info["generation"], time.thread_time_ns() - started[0]))

    gc.callbacks.append(callback)
    return runs


def serve(kind: str, profile: str | None) -> None:
    """Server process: serve `kind`, print the port, stop when stdin closes."""
    if profile is None:
        asyncio.run(_serve(kind))
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(_serve(kind))
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


async def drive(target: str, pid: int, warmup: int, calls: int, mark: Callable[[], None]) -> float:
    """Sends warmup + calls status checks, 64 in flight; the server's CPU us per measured call."""
    from .throughput import sample_request

    request = sample_request()
    async with aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)

        async def batch(count: int) -> None:
            left = count

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await call(request, timeout=10)

            await asyncio.gather(*(worker() for _ in range(64)))

        await batch(warmup)
        mark()
        start = process_cpu_s(pid)
        await batch(calls)
        return (process_cpu_s(pid) - start) / calls * 1e6


def one_run(
    tree: Path, kind: str, warmup: int, calls: int, profile: str | None = None
) -> tuple[float, float]:
    """Server CPU us per call, and (sdk) the CPU us per call spent in the dispatcher's handle."""
    env = {**os.environ, "PYTHONPATH": str(tree / "python")}
    args = [sys.executable, "-m", "bench.sdk_cost", "--serve", kind]
    if profile is not None:
        args += ["--profile", profile]
    server = subprocess.Popen(
        args, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        assert server.stdin is not None
        port = int(server.stdout.readline())
        stdin, stdout = server.stdin, server.stdout

        def mark() -> None:
            stdin.write("mark\n")
            stdin.flush()
            stdout.readline()

        cpu = asyncio.run(drive(f"127.0.0.1:{port}", server.pid, warmup, calls, mark))
        stdin.write("stop\n")
        stdin.flush()
        handle = float(stdout.readline() or "nan") if kind != "bare" else float("nan")
        return cpu, handle
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_cost")
    parser.add_argument("--serve", choices=("sdk", "bare"))
    parser.add_argument("--profile")
    parser.add_argument("--trees", default=str(ROOT))
    parser.add_argument("--kinds", default="sdk")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.profile)
        return 0
    if args.profile:
        kind = args.kinds.split(",")[0]
        cpu, _ = one_run(ROOT, kind, args.warmup, args.calls, args.profile)
        print(f"{kind} under cProfile: {cpu:.0f} us/call; stats in {args.profile}")
        return 0
    configs = [
        (Path(tree), kind) for tree in args.trees.split(",") for kind in args.kinds.split(",")
    ]
    results: dict[tuple[Path, str], list[tuple[float, float]]] = {c: [] for c in configs}
    for index in range(args.rounds):
        order = configs[index % len(configs) :] + configs[: index % len(configs)]
        for tree, kind in order:
            cpu, handle = one_run(tree, kind, args.warmup, args.calls)
            results[(tree, kind)].append((cpu, handle))
            print(f"round {index + 1} {tree} {kind}: {cpu:.0f} us/call", file=sys.stderr)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.calls} calls per run, 64 in flight")
    for (tree, kind), values in results.items():
        cpus, handles = [v[0] for v in values], [v[1] for v in values]
        shown = ", ".join(f"{v:.0f}" for v in cpus)
        print(f"{kind:5} {tree}: server CPU median {median(cpus):.0f} us/call ({shown})")
        if kind != "bare":
            shown = ", ".join(f"{v:.1f}" for v in handles)
            print(f"{'':5} {tree}: in handle median {median(handles):.1f} us/call ({shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

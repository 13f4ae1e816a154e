"""Engines with and without telemetry, alive at once, measured in turns (section 6).

On a machine shared with other work, the CPU an engine needs per status check moves with the
load by more than telemetry costs, so runs minutes apart compare badly. Here one engine per
setting runs in a process of its own, all started together; the parent lets one run at a time
(the others are stopped with SIGSTOP) and measures it for a short window, in turn, for several
rounds: settings compared within seconds of each other, under the same load. Each round starts
fresh processes, so no setting keeps a lucky (or unlucky) process for the whole run.

A window's figures come from the engine's own process: `time.process_time()` (every thread, the
span export thread included) and the status checks recorded (`on_change`), read at the window's
start and end through a pipe while the engine runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

from ._common import SPAWN, saturating_policy

Setting = Callable[[], tuple[Any, Callable[[], object] | None, Callable[[], dict[str, float]]]]
"""Makes an engine's telemetry (None: off), its scrape (None: nothing to scrape), and a
function giving the spans exported and dropped (called at the end, after a flush)."""

SETTLE_S = 0.3
"""After a stopped engine resumes, it first handles what arrived meanwhile; not measured."""

WARMUP_CHECKS_PER_TASK = 3
"""Status checks per task (on average) an engine makes before its first turn."""


def worker(
    target: str,
    concurrency: int,
    telemetry: Setting,
    conn: Connection,
) -> None:
    """Child: an engine polling 4*C RUNNING tasks with 1 us intervals (section 1's engine
    client) with the telemetry `telemetry()` makes; answers "mark" with (CPU s, checks so far)
    and, on "stop", stops and sends its span counts."""
    asyncio.run(_worker(target, concurrency, telemetry, conn))


async def _worker(
    target: str,
    concurrency: int,
    telemetry: Setting,
    conn: Connection,
) -> None:
    from asyncplugin.engine import CallKind, Engine, MemoryStore, TaskUpdate

    from .throughput import METHOD, PAYLOAD

    # a call in flight while the process is stopped must not expire
    policy = saturating_policy(check_timeout_s=600.0)
    checks = 0
    warm = asyncio.Event()

    def on_change(update: TaskUpdate) -> None:
        nonlocal checks
        checks += sum(1 for check in update.checks if check.kind is CallKind.CHECK)
        if checks >= WARMUP_CHECKS_PER_TASK * 4 * concurrency:
            warm.set()

    engine_telemetry, scrape, spans = telemetry()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def command() -> None:
        message = conn.recv()
        if message == "mark":
            conn.send((time.process_time(), checks))
        else:
            stop.set()

    engine = Engine(
        store=MemoryStore(),
        policy=policy,
        on_change=on_change,
        max_concurrent_rpcs=concurrency,
        max_concurrent_rpcs_per_target=concurrency,
        telemetry=engine_telemetry,
    )
    async with engine:
        for _ in range(4 * concurrency):
            await engine.submit(target, method=METHOD, payload=PAYLOAD)
        await warm.wait()  # every task initiated and polling: no window measures start-up
        loop.add_reader(conn.fileno(), command)
        conn.send("ready")
        while not stop.is_set():
            # Scraped once a second, as a Prometheus server would (engine time: stopped time
            # does not count, so each window sees its share of scrapes).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            if scrape is not None:
                scrape()
        loop.remove_reader(conn.fileno())
    conn.send(spans())


class Turns:
    """Engines started together, one per setting, run one at a time."""

    def __init__(
        self,
        target: str,
        concurrency: int,
        settings: Mapping[str, Setting],
    ) -> None:
        self._children: dict[str, tuple[Any, Connection]] = {}
        self.spans: dict[str, dict[str, float]] = {}
        """Per setting, the spans exported and dropped (filled by `close`)."""
        try:
            for name, telemetry in settings.items():
                parent, child = SPAWN.Pipe()
                process = SPAWN.Process(
                    target=worker, args=(target, concurrency, telemetry, child), daemon=True
                )
                process.start()
                child.close()
                self._children[name] = (process, parent)
            for name, (process, conn) in self._children.items():
                if not conn.poll(120) or conn.recv() != "ready":
                    raise RuntimeError(f"the {name} engine did not start")
                os.kill(process.pid, signal.SIGSTOP)
        except BaseException:
            self.close()
            raise

    def measure(self, name: str, window_s: float) -> dict[str, float]:
        """Lets the `name` engine run alone for SETTLE_S + `window_s`; its checks/s and CPU per
        check in the window."""
        process, conn = self._children[name]
        os.kill(process.pid, signal.SIGCONT)
        try:
            time.sleep(SETTLE_S)
            cpu0, checks0 = self._mark(conn)
            started = time.perf_counter()
            time.sleep(window_s)
            cpu1, checks1 = self._mark(conn)
            elapsed = time.perf_counter() - started
        finally:
            os.kill(process.pid, signal.SIGSTOP)
        checks = max(checks1 - checks0, 1)
        return {
            "rate": (checks1 - checks0) / elapsed,
            "calls": float(checks1 - checks0),
            "client_cpu_us": (cpu1 - cpu0) / checks * 1e6,
        }

    @staticmethod
    def _mark(conn: Connection) -> tuple[float, int]:
        conn.send("mark")
        if not conn.poll(60):
            raise RuntimeError("an engine did not answer")
        cpu_s, checks = conn.recv()
        return float(cpu_s), int(checks)

    def close(self) -> None:
        for process, conn in self._children.values():
            with contextlib.suppress(OSError, ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                conn.send("stop")
        for name, (process, conn) in self._children.items():
            with contextlib.suppress(EOFError, OSError):
                if conn.poll(30):
                    self.spans[name] = conn.recv()
            process.join(15)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        self._children.clear()

    def __enter__(self) -> Turns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

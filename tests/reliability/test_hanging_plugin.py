"""A plugin that never answers (or answers slowly) fails its own tasks on time, and only those.

The engine runs in the test's process on the real clock; two plugin processes
(tests.reliability.jobs_plugin) serve the tasks: one where 100 tasks' status checks hang
forever, one with well-behaved jobs polled every 0.25 s. The per-check timeout must end each
hanging check, the transport retry policy must then fail the task CHECK_TIMEOUT, and the
well-behaved tasks' checks must go out on schedule meanwhile: their lateness (the time a check
was sent minus the time the engine had scheduled it for) is measured from the first hanging
check to the last one's end. Ten more checks answer after 5 s (too slow: CHECK_TIMEOUT like the
hanging ones) and ten after 0.5 s (slow but in time: SUCCEEDED).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from asyncplugin.engine import (
    CallKind,
    CheckOutcome,
    CheckRecord,
    Engine,
    MemoryStore,
    PollingPolicy,
    TaskOptions,
    TransportRetryPolicy,
)
from asyncplugin.protocol import TaskState
from tests.reliability.procs import start_plugin

HANGING = 100
SLOW = 10
GOOD = 200
EVERY_S = 0.25
GOOD_POLICY = PollingPolicy(
    initial_interval_s=EVERY_S,
    multiplier=1.0,
    max_interval_s=EVERY_S,
    min_interval_s=EVERY_S,
    jitter=0.0,
    check_timeout_s=5.0,
    deadline_s=60.0,
)
HANG_POLICY = PollingPolicy(
    initial_interval_s=0.2,
    min_interval_s=0.2,
    max_interval_s=0.2,
    check_timeout_s=1.5,
    deadline_s=60.0,
)
HANG_RETRY = TransportRetryPolicy(
    initial_backoff_s=0.2, min_backoff_s=0.1, max_backoff_s=0.2, max_retries=1
)


@dataclass
class Lateness:
    """How late the well-behaved tasks' checks were while the hanging checks were in flight."""

    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    check_rate: float
    """Checks sent per well-behaved task in the window, over the number its schedule asks for."""
    saturated_p50_ms: float
    """The median lateness of the checks that fell due while 30 or more hanging checks were in
    flight at once (without the bulkhead those wait for the hanging checks' timeouts)."""

    def __str__(self) -> str:
        return (
            f"{self.samples} checks, lateness p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms,"
            f" max {self.max_ms:.1f} ms; {self.check_rate:.0%} of the scheduled checks sent;"
            f" p50 {self.saturated_p50_ms:.1f} ms of those due while >= {SATURATED} checks hung"
        )


SATURATED = 30
"""Hanging checks in flight at once that make a window "saturated" (the default per-target
bound is 32; without it, 64 hanging checks fill every slot)."""


def _saturated(hang_histories: list[list[CheckRecord]]) -> list[tuple[float, float]]:
    """The time intervals when at least SATURATED hanging checks were in flight at once."""
    edges = sorted(
        (time, step)
        for history in hang_histories
        for entry in history
        if entry.kind is CallKind.CHECK
        for time, step in ((entry.started_time, 1), (entry.finished_time, -1))
    )
    intervals: list[tuple[float, float]] = []
    in_flight, since = 0, 0.0
    for time, step in edges:
        before, in_flight = in_flight, in_flight + step
        if before < SATURATED <= in_flight:
            since = time
        elif in_flight < SATURATED <= before:
            intervals.append((since, time))
    return intervals


def _lateness(
    histories: list[list[CheckRecord]], start: float, end: float, busy: list[tuple[float, float]]
) -> Lateness:
    late: list[float] = []
    saturated: list[float] = []
    for history in histories:
        for before, entry in itertools.pairwise(history):
            due = before.next_check_time
            if due is not None and start <= entry.started_time <= end:
                ms = max(0.0, entry.started_time - due) * 1000
                late.append(ms)
                if any(low <= due <= high for low, high in busy):  # due while they hung
                    saturated.append(ms)
    late.sort()
    assert late, "no well-behaved check fell in the window"
    assert saturated, "no well-behaved check fell in a saturated window"
    p99 = late[min(len(late) - 1, round(0.99 * (len(late) - 1)))]
    expected = len(histories) * (end - start) / EVERY_S
    return Lateness(
        len(late),
        statistics.median(late),
        p99,
        late[-1],
        len(late) / expected,
        statistics.median(saturated),
    )


async def _run(
    tmp_path: Path,
    *,
    same_plugin: bool,
    max_concurrent_rpcs: int = 64,
    max_concurrent_rpcs_per_target: int | None = None,
) -> Lateness:
    bad, bad_port = await start_plugin(tmp_path / "bad.db", tmp_path / "bad.log")
    good, good_port = await start_plugin(tmp_path / "good.db", tmp_path / "good.log")
    if same_plugin:
        good_port = bad_port
    bad_target, good_target = f"127.0.0.1:{bad_port}", f"127.0.0.1:{good_port}"
    try:
        engine = Engine(
            store=MemoryStore(),
            shutdown_grace_s=0.0,
            max_concurrent_rpcs=max_concurrent_rpcs,
            max_concurrent_rpcs_per_target=max_concurrent_rpcs_per_target,
        )
        async with engine:
            bad_options = TaskOptions(policy=HANG_POLICY, retry_policy=HANG_RETRY)
            good_options = TaskOptions(policy=GOOD_POLICY)
            good_ids = [
                await engine.submit(good_target, payload={"duration_s": 10.0}, options=good_options)
                for _ in range(GOOD)
            ]
            slow = {"mode": "slow", "delay_s": 0.5, "duration_s": 1.0}
            slow_ids = [
                await engine.submit(bad_target, payload=slow, options=bad_options)
                for _ in range(SLOW)
            ]
            hang_ids = [
                await engine.submit(bad_target, payload={"mode": "hang"}, options=bad_options)
                for _ in range(HANGING)
            ]
            too_slow = {"mode": "slow", "delay_s": 5.0}
            too_slow_ids = [
                await engine.submit(bad_target, payload=too_slow, options=bad_options)
                for _ in range(SLOW)
            ]
            ended = await asyncio.wait_for(
                asyncio.gather(*(engine.wait(i) for i in hang_ids + too_slow_ids + slow_ids)),
                timeout=90,
            )
            hang_histories = [await engine.checks(i) for i in hang_ids + too_slow_ids]
            end = max(h[-1].finished_time for h in hang_histories)
            done = await asyncio.wait_for(
                asyncio.gather(*(engine.wait(i) for i in good_ids)), timeout=60
            )
            good_histories = [await engine.checks(i) for i in good_ids]
    finally:
        await bad.kill()
        await good.kill()

    assert Counter(r.error_code for r in ended) == {
        "CHECK_TIMEOUT": HANGING + SLOW,  # hanging, and slower than check_timeout_s
        "": SLOW,  # slow but within check_timeout_s: SUCCEEDED
    }
    for history in hang_histories:
        # initiation RUNNING, check 1 timed out (retried once), then timed out again: failed
        assert [(e.kind, e.check_number, e.outcome, e.grpc_code) for e in history] == [
            (CallKind.INITIATE, 0, CheckOutcome.RUNNING, ""),
            (CallKind.CHECK, 1, CheckOutcome.TRANSPORT_RETRY, "DEADLINE_EXCEEDED"),
            (CallKind.CHECK, 1, CheckOutcome.RPC_ERROR, "DEADLINE_EXCEEDED"),
        ]
        for entry in history[1:]:
            took = entry.finished_time - entry.started_time
            assert took >= HANG_POLICY.check_timeout_s * 0.95, took  # the timeout fired
    assert Counter(r.state for r in done) == {TaskState.SUCCEEDED: GOOD}
    start = min(h[1].started_time for h in hang_histories)
    return _lateness(good_histories, start, end, _saturated(hang_histories))


@pytest.mark.timeout(120)
async def test_hanging_checks_do_not_delay_other_plugins(tmp_path: Path) -> None:
    """110 checks hang on one plugin (100 never answer, 10 answer after 5 s) with the default
    engine settings: each times out after 1.5 s, is retried once, and its task fails
    CHECK_TIMEOUT; 10 checks answering in 0.5 s succeed; the 200 tasks of another plugin keep
    their 0.25 s schedule meanwhile (the per-target bulkhead keeps half the slots free)."""
    lateness = await _run(tmp_path, same_plugin=False)
    print(f"other plugin, default settings: {lateness}")
    # The other plugin's checks are sent, not just on time when sent: 88% of the scheduled ones
    # were (each interval also holds the call's own time); with the bulkhead disabled
    # (max_concurrent_rpcs_per_target=64) only 34% were, at a p50 lateness of 1.4 ms. The bound
    # sits between the two: 0.7 was missed on a 2-core machine at load average 8+ (the checks
    # are sent, but later, so fewer fit the window), while starvation stays far below 0.5.
    assert lateness.check_rate >= 0.5
    assert lateness.p50_ms < 100
    assert lateness.saturated_p50_ms < 100  # starved (no bulkhead): ~1,300 ms


@pytest.mark.timeout(120)
async def test_hanging_checks_beside_good_tasks_of_the_same_plugin(tmp_path: Path) -> None:
    """The same hanging checks on the plugin that also serves the 200 good tasks: with
    max_concurrent_rpcs (512, so 256 per target) well above the number of hanging calls, the
    good tasks keep their schedule."""
    lateness = await _run(tmp_path, same_plugin=True, max_concurrent_rpcs=512)
    print(f"same plugin, max_concurrent_rpcs=512: {lateness}")
    assert lateness.check_rate >= 0.5  # 95% measured; starved (no bulkhead): 34%
    assert lateness.p50_ms < 100
    assert lateness.saturated_p50_ms < 100  # starved (no bulkhead): ~1,300 ms

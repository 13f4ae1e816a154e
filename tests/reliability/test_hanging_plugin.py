"""A plugin that never answers (or answers slowly) fails its own tasks on time, and only those.

The engine runs in the test's process on the real clock; two plugin processes
(tests.reliability.jobs_plugin) serve the tasks: one where 100 tasks' status checks hang
forever, one with well-behaved jobs polled every 0.25 s. The per-check timeout must end each
hanging check, the transport retry policy must then fail the task CHECK_TIMEOUT, and the
well-behaved tasks' checks must go out on schedule meanwhile: their lateness (the time a check
was sent minus the time the engine had scheduled it for, for every check due in the window,
whenever sent) is measured from the first hanging check to the last one's end. Ten more checks
answer after 5 s (too slow: CHECK_TIMEOUT like the hanging ones) and ten after 0.5 s (slow but
in time: SUCCEEDED).

The real clock is the point here, so the bounds do not rest on how fast this machine is: the
same tasks' checks in the seconds before any check hangs are the control, and the hanging
window may add at most LATE_MS to their median lateness and call time. A machine busy with
other work slows both windows alike; starvation (checks waiting for a hanging check's timeout
to free a slot) adds ~1,300 ms to the checks due while the slots are full.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections import Counter
from collections.abc import Iterator
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
SETTLE_S = 3.0
"""How long the good tasks run alone before the bad ones are submitted."""
CONTROL_S = 2.0
"""The control window: the last CONTROL_S seconds of SETTLE_S (the first second, when all the
first checks fall due at once, is left out)."""
GOOD_JOB_S = 15.0
"""How long the good tasks run: SETTLE_S, then the hanging window (~10 s with the default
bulkhead of 32 slots: 220 calls of 1.5 s), which is measured only while all of them run."""
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
class Window:
    """How late, and how often, the well-behaved tasks' checks went out in one time window."""

    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    took_p50_ms: float
    """The median time those checks took (sent to answered)."""
    check_rate: float
    """Checks due per well-behaved task in the window, over one per EVERY_S. For information
    only: each interval starts when the previous call is answered, so the rate falls when a
    loaded machine answers slower (88-95% idle, ~40% measured at load average 15)."""

    def __str__(self) -> str:
        return (
            f"{self.samples} checks, lateness p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms,"
            f" max {self.max_ms:.1f} ms, took p50 {self.took_p50_ms:.1f} ms,"
            f" {self.check_rate:.0%} of one per {EVERY_S} s"
        )


@dataclass
class Lateness:
    """The well-behaved tasks' checks while the hanging checks were in flight, against the same
    tasks' checks in the same run just before any check hung (the control: same process, same
    machine load, so a busy machine slows both alike while starvation slows only the first)."""

    hanging: Window
    control: Window
    saturated_p50_ms: float
    """The median lateness of the checks that fell due while 30 or more hanging checks were in
    flight at once (without the bulkhead those wait for the hanging checks' timeouts)."""

    def __str__(self) -> str:
        return (
            f"while checks hung: {self.hanging}; p50 {self.saturated_p50_ms:.1f} ms of those due"
            f" while >= {SATURATED} checks hung; before (control): {self.control}"
        )


SATURATED = 30
"""Hanging checks in flight at once that make a window "saturated" (the default per-target
bound is 32; without it, 64 hanging checks fill every slot)."""

LATE_MS = 250
"""How much later than in the control window a check may go out, or how much longer it may
take, while checks hang (medians). ~0-150 ms more measured, idle or at load average 15+;
starved (no bulkhead), the checks due while the slots are full wait ~1,300 ms for a hanging
check's timeout (check_timeout_s 1.5 s) to free one."""


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


def _late_ms(
    histories: list[list[CheckRecord]], start: float, end: float
) -> Iterator[tuple[float, float, float]]:
    """(due time, lateness in ms, time taken in ms) of each check due between start and end,
    whenever it was sent (a check held back past the window still counts, with all its
    lateness)."""
    for history in histories:
        for before, entry in itertools.pairwise(history):
            due = before.next_check_time
            if due is not None and start <= due <= end:
                took_ms = (entry.finished_time - entry.started_time) * 1000
                yield due, max(0.0, entry.started_time - due) * 1000, took_ms


def _window(histories: list[list[CheckRecord]], start: float, end: float) -> Window:
    checks = list(_late_ms(histories, start, end))
    assert checks, f"no well-behaved check fell due in the window {start:.3f}..{end:.3f}"
    late = sorted(ms for _, ms, _ in checks)
    p99 = late[min(len(late) - 1, round(0.99 * (len(late) - 1)))]
    took_p50 = statistics.median(took for _, _, took in checks)
    expected = len(histories) * (end - start) / EVERY_S
    return Window(len(late), statistics.median(late), p99, late[-1], took_p50, len(late) / expected)


def _assert_every_check_scheduled_on_policy(histories: list[list[CheckRecord]]) -> None:
    """Each well-behaved task's next check was scheduled EVERY_S after its previous answer, from
    its first answer to its last: no check is skipped or put off (with `_late_ms`, which counts
    every check by its due time, this accounts for every check the schedule asks for)."""
    for history in histories:
        assert history[-1].outcome is CheckOutcome.SUCCEEDED, history[-1]
        for entry in history[:-1]:
            assert entry.outcome is CheckOutcome.RUNNING, entry
            assert entry.interval_s == EVERY_S, entry
            assert entry.next_check_time == pytest.approx(entry.finished_time + EVERY_S), entry


def _lateness(
    histories: list[list[CheckRecord]],
    control: tuple[float, float],
    start: float,
    end: float,
    busy: list[tuple[float, float]],
) -> Lateness:
    """The hanging window start..end (cut where the first well-behaved task ended, so that all
    of them are checked throughout) against the control window."""
    end = min(end, *(history[-1].started_time for history in histories))  # each one's last
    assert end - start >= 2.0, (start, end)  # 8+ intervals
    saturated = [
        ms for due, ms, _ in _late_ms(histories, start, end) if any(a <= due <= b for a, b in busy)
    ]
    assert saturated, "no well-behaved check fell in a saturated window"
    return Lateness(
        _window(histories, start, end),
        _window(histories, *control),
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
            good_job = {"duration_s": GOOD_JOB_S}
            good_ids = [
                await engine.submit(good_target, payload=good_job, options=good_options)
                for _ in range(GOOD)
            ]
            # The good tasks' first checks (all due at once) settle into their schedule before
            # any check hangs: the hanging window is compared with a steady state, not start-up.
            await asyncio.sleep(SETTLE_S)
            settled = engine.clock.now()
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
    _assert_every_check_scheduled_on_policy(good_histories)
    start = min(h[1].started_time for h in hang_histories)
    control = (settled - CONTROL_S, settled)
    return _lateness(good_histories, control, start, end, _saturated(hang_histories))


def _assert_schedule_kept(lateness: Lateness) -> None:
    """The well-behaved tasks' checks are sent while checks hang, as often and as nearly on time
    as the same tasks' checks once none hang (measured against the run's own control window, not
    the wall clock: a machine busy with other work slows both windows alike)."""
    assert lateness.hanging.p50_ms < lateness.control.p50_ms + LATE_MS, lateness
    assert lateness.saturated_p50_ms < lateness.control.p50_ms + LATE_MS, lateness
    assert lateness.hanging.took_p50_ms < lateness.control.took_p50_ms + LATE_MS, lateness


@pytest.mark.timeout(120)
async def test_hanging_checks_do_not_delay_other_plugins(tmp_path: Path) -> None:
    """110 checks hang on one plugin (100 never answer, 10 answer after 5 s) with the default
    engine settings: each times out after 1.5 s, is retried once, and its task fails
    CHECK_TIMEOUT; 10 checks answering in 0.5 s succeed; the 200 tasks of another plugin keep
    their 0.25 s schedule meanwhile (the per-target bulkhead keeps half the slots free)."""
    lateness = await _run(tmp_path, same_plugin=False)
    print(f"other plugin, default settings: {lateness}")
    _assert_schedule_kept(lateness)


@pytest.mark.timeout(120)
async def test_hanging_checks_beside_good_tasks_of_the_same_plugin(tmp_path: Path) -> None:
    """The same hanging checks on the plugin that also serves the 200 good tasks: with
    max_concurrent_rpcs (512, so 256 per target) well above the number of hanging calls, the
    good tasks keep their schedule."""
    lateness = await _run(tmp_path, same_plugin=True, max_concurrent_rpcs=512)
    print(f"same plugin, max_concurrent_rpcs=512: {lateness}")
    _assert_schedule_kept(lateness)

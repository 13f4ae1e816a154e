"""Detection latency: how soon a finished job is noticed, and how many checks that costs.

Pure simulation on the same job durations for every poller (log-uniform 2 s .. 30 min, seeded),
no wall time. A job starts at t = 0 with the initiating call (answered RUNNING); the first status
check at or after the job's end sees it done. Delay = that check's time - the job's end; checks =
status checks sent (the initiating call is not counted). RPC time is taken as zero.

- engine, default backoff: intervals from `asyncplugin.engine.next_interval` with the default
  `PollingPolicy` (1 s x1.6 to 60 s, +-20% jitter), exactly as the engine draws them.
- engine + check-after hint: the plugin knows its job's length only roughly: its estimate is the
  true duration x exp(N(0, 0.3)) (about +-30%). Each RUNNING answer hints the estimated time
  left while that is positive, and no hint once the estimate has passed (the engine's backoff
  for that check number then applies). The engine clamps hints to [0.5 s, 60 s].
- fixed 1 s poller: Steamship's client `Task.wait` (a check every second).
- google-api-core defaults: `PollingFuture.result()` checks at once, then sleeps
  `exponential_sleep_generator(1.0, 20.0, 1.5)` between checks (full jitter: uniform(0, cap),
  cap 1 s x1.5 up to 20 s). Its default polling timeout (900 s) is ignored here so every job is
  followed to its end; the share of jobs it would have abandoned is reported separately.

A cross-check runs the real `Engine` on a `FakeClock` with an in-process transport for a few
hundred of the same jobs, and compares its recorded detection delays with the simulation's.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from typing import Any

from ._common import Config, Row, log

MIN_S, MAX_S = 2.0, 1800.0


def durations(n: int, seed: int = 6) -> list[float]:
    """Job durations, log-uniform between 2 s and 30 min."""
    rng = random.Random(seed)
    return [math.exp(rng.uniform(math.log(MIN_S), math.log(MAX_S))) for _ in range(n)]


def engine_schedule(
    duration_s: float, rng: random.Random, hint_sigma: float | None = None
) -> tuple[float, int]:
    """(detection delay, checks) for one job polled by the engine's policy."""
    from asyncplugin.engine import PollingPolicy, next_interval

    policy = PollingPolicy()
    estimate = duration_s * math.exp(rng.gauss(0, hint_sigma)) if hint_sigma is not None else None
    t = 0.0
    attempt = 1
    hint = estimate if estimate is not None else None  # the initiating answer's hint
    while True:
        interval, _ = next_interval(attempt, policy, rng, hint)
        t += interval
        if t >= duration_s:
            return t - duration_s, attempt
        attempt += 1
        if estimate is not None:
            left = estimate - t
            hint = left if left > 0 else None


def check_times(kind: str, duration_s: float, seed: int = 3) -> list[float]:
    """The times (s after the start) of every status check a poller sends for one job."""
    from asyncplugin.engine import PollingPolicy, next_interval

    if kind == "fixed_1s":
        return [float(i) for i in range(1, max(1, math.ceil(duration_s)) + 1)]
    if kind == "api_core":
        from google.api_core.retry import exponential_sleep_generator

        random.seed(seed)
        times, t = [0.0], 0.0
        sleeps = exponential_sleep_generator(1.0, 20.0, 1.5)
        while t < duration_s:
            t += next(sleeps)
            times.append(t)
        return times
    rng = random.Random(seed)
    policy = PollingPolicy()
    times, t, attempt = [], 0.0, 1
    while t < duration_s:
        t += next_interval(attempt, policy, rng)[0]
        times.append(t)
        attempt += 1
    return times


def fixed_schedule(duration_s: float, every_s: float = 1.0) -> tuple[float, int]:
    """(detection delay, checks) for a poller checking every `every_s`."""
    checks = max(1, math.ceil(duration_s / every_s))
    return checks * every_s - duration_s, checks


def api_core_schedule(duration_s: float) -> tuple[float, int]:
    """(detection delay, checks) with google-api-core's default polling (its own generator)."""
    from google.api_core.retry import exponential_sleep_generator

    t = 0.0
    checks = 1  # result() checks at once
    sleeps = exponential_sleep_generator(1.0, 20.0, 1.5)
    while t < duration_s:
        t += next(sleeps)
        checks += 1
    return t - duration_s, checks


def simulate(jobs: list[float], seed: int = 7) -> dict[str, dict[str, float]]:
    """Mean/median delay and mean checks per task for every poller on the same jobs."""
    rng = random.Random(seed)
    random.seed(seed)  # api-core draws from the random module
    results: dict[str, list[tuple[float, int]]] = {
        "engine": [engine_schedule(d, rng) for d in jobs],
        "engine_hint": [engine_schedule(d, rng, 0.3) for d in jobs],
        "fixed_1s": [fixed_schedule(d) for d in jobs],
        "api_core": [api_core_schedule(d) for d in jobs],
    }
    out = {}
    for name, pairs in results.items():
        delays = [p[0] for p in pairs]
        out[name] = {
            "mean_delay_s": statistics.fmean(delays),
            "median_delay_s": statistics.median(delays),
            "mean_checks": statistics.fmean(p[1] for p in pairs),
            "mean_delay_share": statistics.fmean(d / j for d, j in zip(delays, jobs, strict=True)),
        }
    out["api_core"]["abandoned_share"] = sum(1 for d in jobs if d > 900) / len(jobs)
    return out


class _FakeJobs:
    """An in-process Transport: each task's job ends `duration` after its initiating call."""

    def __init__(self, clock: Any, lengths: dict[str, float]) -> None:
        from asyncplugin.v1 import plugin_pb2, task_pb2

        self._clock = clock
        self._lengths = lengths
        self.ends: dict[str, float] = {}
        running = plugin_pb2.InvokeResponse()
        running.status.state = task_pb2.TASK_STATE_RUNNING
        running.status.remote_status_input.update({"job": "simulated"})
        self._running = running.SerializeToString()
        self._done = plugin_pb2.InvokeResponse(data=b"").SerializeToString()
        self._request = plugin_pb2.InvokeRequest

    async def call(self, target: str, method: str, request: bytes, **_: Any) -> bytes:
        message = self._request.FromString(request)
        key = message.context.idempotency_key
        now = self._clock.now()
        if not message.is_status_check:
            self.ends[key] = now + self._lengths[key]
            return self._running
        return self._done if now >= self.ends[key] else self._running

    async def close(self) -> None:
        return None


async def _engine_on_fake_clock(jobs: list[float]) -> list[float]:
    from asyncplugin.engine import Engine, FakeClock, TaskOptions

    clock = FakeClock()
    lengths = {f"job-{i}": d for i, d in enumerate(jobs)}
    transport = _FakeJobs(clock, lengths)
    async with Engine(clock=clock, transport=transport, rng=random.Random(8)) as engine:
        ids = {
            key: await engine.submit("fake:1", options=TaskOptions(idempotency_key=key))
            for key in lengths
        }
        records = await asyncio.gather(*(engine.wait(task_id) for task_id in ids.values()))
    delays = []
    for key, record in zip(ids, records, strict=True):
        assert record.end_time is not None
        delays.append(record.end_time - transport.ends[key])
    return delays


def run(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """Runs the section and returns its rows."""
    quick = config.quick
    n = 2_000 if quick else 20_000
    log(f"detection: {n:,} simulated jobs, 2 s .. 30 min")
    jobs = durations(n)
    sim = simulate(jobs)
    cross_n = 100 if quick else 400
    log(f"detection: real Engine on a FakeClock, {cross_n} of the same jobs")
    real = asyncio.run(_engine_on_fake_clock(jobs[:cross_n]))
    sim_same = simulate(jobs[:cross_n], seed=9)["engine"]["mean_delay_s"]
    base = sim["api_core"]
    labels = {
        "engine": "engine, default backoff",
        "engine_hint": "engine + check-after hint (+-30%)",
        "fixed_1s": "fixed 1 s poller (Steamship Task.wait)",
    }
    rows = []
    for key, label in labels.items():
        rows.append(
            Row(
                "4",
                f"mean detection delay, {label}",
                sim[key]["mean_delay_s"],
                "s",
                "google-api-core polling defaults",
                base["mean_delay_s"],
                ratio_is_less=True,
            )
        )
        rows.append(
            Row(
                "4",
                f"  status checks per task, {label}",
                sim[key]["mean_checks"],
                "n",
                "google-api-core polling defaults",
                base["mean_checks"],
                ratio_is_less=True,
            )
        )
    rows.append(
        Row(
            "4",
            f"cross-check: real Engine on FakeClock, {cross_n} jobs, mean delay",
            statistics.fmean(real),
            "s",
            "simulation of the same jobs",
            sim_same,
        )
    )
    return rows, {"n": n, "simulation": sim, "fake_clock_mean_delay_s": statistics.fmean(real)}

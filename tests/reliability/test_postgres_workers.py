"""Engine worker processes on one PostgreSQL, under faults: SIGKILL, SIGSTOP past the lease, and
the database restarted under them. After each run: nothing lost, nothing unfinished, no result
twice or wrong, no initiation after a recorded RUNNING, never two calls of one task at once.

These involve real processes and a real database, so they wait on the real clock, always bounded.
The chaos run is small in `make test` and full size (5,000 tasks, 10 kills) in
`make reliability-long`; its figures are in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import pytest

from tests.pg_server import PgServer
from tests.reliability.procs import start_plugin
from tests.reliability.sizes import LONG
from tests.reliability.workers_pg import Fleet, count, wanted_tasks

POLICY = {
    "initial_interval_s": 0.1,
    "multiplier": 1.5,
    "max_interval_s": 0.5,
    "min_interval_s": 0.05,
    "jitter": 0.2,
    "check_timeout_s": 1.0,
    "deadline_s": 900.0,
}
RETRY = {
    "initial_backoff_s": 0.1,
    "multiplier": 2.0,
    "max_backoff_s": 1.0,
    "min_backoff_s": 0.05,
    "max_retries": 20,
}
# A lease outlasts a call (1 s timeout + the engine's 2 s margin); short, so the faults are quick.
LEASE = {"lease_s": 4.0, "horizon_s": 0.5, "poll_interval_s": 0.25, "batch": 32}
PAUSE_S = LEASE["lease_s"] + LEASE["horizon_s"] + 1.5


async def _fleet(
    work: Path, url: str, tasks: int, *, size: int, seed: int, **payload: object
) -> tuple[Fleet, object]:
    plugin, port = await start_plugin(work / "plugin.db", work / "plugin.log", record_calls=True)
    fleet = Fleet(
        work,
        url,
        f"127.0.0.1:{port}",
        wanted_tasks(tasks, seed, **payload),
        size=size,
        policy=POLICY,
        retry=RETRY,
        lease=LEASE,
    )
    return fleet, plugin


@pytest.mark.timeout(900 if LONG else 120)
@pytest.mark.parametrize(
    ("tasks", "kills"),
    [
        pytest.param(300, 3, id="small"),
        pytest.param(5000, 10, id="long", marks=pytest.mark.long),
    ],
)
async def test_chaos_four_workers_killed_and_paused(
    pg_database: str, tmp_path: Path, tasks: int, kills: int
) -> None:
    """4 workers; a random one SIGKILLed `kills` times (restarted each time), another SIGSTOPped
    past its lease and resumed. Every count of Tally.problems is 0."""
    rng = random.Random(13)
    started = time.monotonic()
    fleet, plugin = await _fleet(tmp_path, pg_database, tasks, size=4, seed=13)
    paused = 3

    async def pause() -> None:
        await asyncio.sleep(1.0)
        fleet.signal(paused, signal.SIGSTOP)
        await asyncio.sleep(PAUSE_S)  # the fault: a pause longer than the lease
        fleet.signal(paused, signal.SIGCONT)

    try:
        await fleet.start_all()
        pausing = asyncio.ensure_future(pause())
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.5, 2.0))  # the fault: a kill at a random moment
            await fleet.restart(rng.randrange(3))
        await pausing
        await fleet.until_done(timeout_s=780 if LONG else 90)
        alive = fleet.alive()
    finally:
        await fleet.stop()
        await plugin.kill()  # type: ignore[attr-defined]
    tally = count(fleet, tmp_path / "plugin.db")
    print(f"\nchaos: {kills} kills, one pause of {PAUSE_S:.1f}s, "
          f"{time.monotonic() - started:.1f}s: {tally.summary()}")  # fmt: skip
    assert tally.problems() == dict.fromkeys(tally.problems(), 0), tally.summary()
    assert alive == [True] * 4
    assert tally.calls >= sum(item["payload"]["checks"] + 1 for item in fleet.wanted)


@pytest.mark.timeout(120)
async def test_a_worker_paused_past_its_lease_has_its_late_writes_refused(
    pg_database: str, tmp_path: Path
) -> None:
    """Worker A (slow plugin calls in flight) is SIGSTOPped past its lease; B takes its tasks
    over. Resumed, A's late answers are refused by the fence and logged; A carries on, and the
    run has no problem."""
    fleet, plugin = await _fleet(
        tmp_path, pg_database, 24, size=2, seed=7, mode="slow", delay_s=0.8
    )
    try:
        await fleet.start(0)  # A alone, with its 12 tasks
        # Once every task of A has had a status check, A has slow calls in flight.
        await fleet.until_calls(kind="CHECK", at_least=12, timeout_s=60)
        await asyncio.sleep(0.5)  # their first checks ended together: now the second ones run
        fleet.signal(0, signal.SIGSTOP)
        await fleet.start(1)
        await asyncio.sleep(PAUSE_S)
        fleet.signal(0, signal.SIGCONT)
        await fleet.until_done(timeout_s=90)
        alive = fleet.alive()
    finally:
        await fleet.stop()
        await plugin.kill()  # type: ignore[attr-defined]
    tally = count(fleet, tmp_path / "plugin.db")
    print(f"\npause: {tally.summary()}")
    assert tally.problems() == dict.fromkeys(tally.problems(), 0), tally.summary()
    assert tally.refused_writes >= 1
    assert "late write refused" in (tmp_path / "worker-0.log").read_text()
    assert alive == [True, True]


@pytest.mark.timeout(120)
async def test_workers_carry_on_when_the_database_restarts(tmp_path: Path) -> None:
    """The database goes down for a second and comes back under 2 running workers: they
    reconnect (logging it), nothing is lost, and every task ends once."""
    server = PgServer.start()
    try:
        fleet, plugin = await _fleet(tmp_path, server.url(), 120, size=2, seed=5)
        try:
            await fleet.start_all()
            await asyncio.sleep(1.5)
            assert fleet.unfinished() > 0  # the restart lands while work is in flight
            await asyncio.to_thread(server.restart, down_s=1.0)
            await fleet.until_done(timeout_s=90)
            alive = fleet.alive()
        finally:
            await fleet.stop()
            await plugin.kill()  # type: ignore[attr-defined]
        tally = count(fleet, tmp_path / "plugin.db")
    finally:
        server.stop()
    print(f"\nrestart: {tally.summary()}")
    assert tally.problems() == dict.fromkeys(tally.problems(), 0), tally.summary()
    assert "retrying" in fleet.log_text()
    assert alive == [True, True]

"""An engine process killed with SIGKILL at random points loses nothing and repeats nothing.

Real processes on 127.0.0.1: one plugin process that records every initiation in its own file,
and engine processes on one SQLite store, killed round after round while the tasks are in flight
(see tests/reliability/chaos.py for what is counted and how).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.chaos import run_chaos

SEED = int(os.environ.get("CHAOS_SEED", "20261"))


@pytest.mark.timeout(240)
async def test_sigkill_rounds_lose_and_repeat_nothing(tmp_path: Path) -> None:
    """1,000 tasks, 3 SIGKILLs (the first while tasks are still being submitted), then a run to
    the end: 0 tasks lost, 0 finished results lost, 0 initiations repeated after a recorded
    RUNNING, 0 results recorded twice, and every task SUCCEEDED."""
    report = await run_chaos(
        tmp_path,
        tasks=1000,
        rounds=3,
        seed=SEED,
        duration_s=(1.0, 3.0),
        first_kill_after_s=(0.02, 0.15),
        kill_after_s=(0.3, 1.5),
    )
    print(report.summary())
    assert report.problems() == dict.fromkeys(report.problems(), 0), report.summary()
    assert len(report.kills) == 3
    assert report.kills[0].unfinished + report.kills[0].finished > 0
    assert report.jobs_started == 1000  # the plugin started each job once per key


@pytest.mark.long
@pytest.mark.timeout(900)
async def test_sigkill_rounds_long(tmp_path: Path) -> None:
    """The full-size run: 5,000 tasks with jobs of 2-15 s and 10 SIGKILLs, same promises."""
    report = await run_chaos(
        tmp_path,
        tasks=5000,
        rounds=10,
        seed=SEED,
        duration_s=(2.0, 15.0),
        first_kill_after_s=(0.05, 0.5),
        kill_after_s=(0.05, 2.0),
        final_timeout_s=600.0,
    )
    print(report.summary())
    assert report.problems() == dict.fromkeys(report.problems(), 0), report.summary()
    assert report.jobs_started == 5000

"""A simulated third-party job API, in-process: what an asynchronous plugin typically wraps.

Jobs take `job_duration_s` on the injected clock, fail with probability `failure_rate` (drawn
from a seeded generator, so runs repeat exactly), report progress while they run, and honour an
idempotency key: starting a job twice with the same key returns the same job. Nothing sleeps:
time passes only when the clock says so, which lets tests drive hours of work in milliseconds.

Environment variables (read by `FakeRemote.from_env`, used when a plugin is served from the CLI):
    ASYNCPLUGIN_FAKE_JOB_S         job duration in seconds (default 5)
    ASYNCPLUGIN_FAKE_FAILURE_RATE  probability that a job fails, 0..1 (default 0)
    ASYNCPLUGIN_FAKE_SEED          seed of the failure draws and job ids (default 0)
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

JobState = Literal["running", "succeeded", "failed", "cancelled"]

Work = Callable[[Mapping[str, Any]], dict[str, Any]]
"""Computes a job's output from its input, when the job succeeds."""


class JobNotFound(KeyError):
    """The remote API knows no job with that id (for example after the fake restarted)."""


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """What the remote API reports about one job at one moment."""

    job_id: str
    state: JobState
    fraction: float
    remaining_s: float
    message: str
    output: dict[str, Any] | None = None
    error: str | None = None


@dataclass(slots=True)
class _Job:
    job_id: str
    spec: dict[str, Any]
    started_at: float
    duration_s: float
    fails: bool
    cancelled: bool = False


def _echo_work(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"input": dict(spec)}


class FakeRemote:
    """An in-memory job service with a configurable duration and failure rate.

    Args:
        job_duration_s: how long a job runs unless `submit` says otherwise.
        failure_rate: probability, 0..1, that a job fails at its end.
        seed: seed for failure draws and job ids; the same seed gives the same run.
        now: the clock, in seconds; inject a fake one in tests.
        work: computes a succeeded job's output from its input spec.
    """

    def __init__(
        self,
        *,
        job_duration_s: float = 5.0,
        failure_rate: float = 0.0,
        seed: int | None = 0,
        now: Callable[[], float] = time.time,
        work: Work = _echo_work,
    ) -> None:
        if job_duration_s < 0:
            raise ValueError(f"job_duration_s must not be negative, got {job_duration_s}")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be within 0..1, got {failure_rate}")
        self.job_duration_s = job_duration_s
        self.failure_rate = failure_rate
        self.now = now
        self._work = work
        self._rng = random.Random(seed)
        self._jobs: dict[str, _Job] = {}
        self._by_key: dict[str, str] = {}

    @classmethod
    def from_env(
        cls, *, now: Callable[[], float] = time.time, work: Work = _echo_work
    ) -> FakeRemote:
        """A FakeRemote configured from the ASYNCPLUGIN_FAKE_* environment variables."""
        env = os.environ
        return cls(
            job_duration_s=float(env.get("ASYNCPLUGIN_FAKE_JOB_S", "5")),
            failure_rate=float(env.get("ASYNCPLUGIN_FAKE_FAILURE_RATE", "0")),
            seed=int(env.get("ASYNCPLUGIN_FAKE_SEED", "0")),
            now=now,
            work=work,
        )

    @property
    def jobs_started(self) -> int:
        """How many distinct jobs were started (duplicates by idempotency key not counted)."""
        return len(self._jobs)

    async def submit(
        self,
        spec: Mapping[str, Any],
        *,
        idempotency_key: str = "",
        duration_s: float | None = None,
        fail: bool | None = None,
    ) -> str:
        """Starts a job and returns its id; the same non-empty key returns the same job."""
        if idempotency_key and idempotency_key in self._by_key:
            return self._by_key[idempotency_key]
        job_id = f"job-{self._rng.getrandbits(48):012x}"
        draw = self._rng.random()
        self._jobs[job_id] = _Job(
            job_id=job_id,
            spec=dict(spec),
            started_at=self.now(),
            duration_s=self.job_duration_s if duration_s is None else max(duration_s, 0.0),
            fails=draw < self.failure_rate if fail is None else fail,
        )
        if idempotency_key:
            self._by_key[idempotency_key] = job_id
        return job_id

    async def poll(self, job_id: str) -> JobSnapshot:
        """The job's current state and progress.

        Raises:
            JobNotFound: no job has that id.
        """
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        elapsed = max(self.now() - job.started_at, 0.0)
        remaining = max(job.duration_s - elapsed, 0.0)
        fraction = 1.0 if job.duration_s == 0 else min(elapsed / job.duration_s, 1.0)
        if job.cancelled:
            return JobSnapshot(job_id, "cancelled", fraction, 0.0, "cancelled by the client")
        if remaining > 0:
            message = f"{fraction:.0%} done, about {remaining:.0f} s left"
            return JobSnapshot(job_id, "running", fraction, remaining, message)
        if job.fails:
            return JobSnapshot(
                job_id,
                "failed",
                1.0,
                0.0,
                "worker crashed",
                error="worker exited with status 137 (out of memory)",
            )
        return JobSnapshot(job_id, "succeeded", 1.0, 0.0, "done", output=self._work(job.spec))

    async def cancel(self, job_id: str) -> None:
        """Stops a job; a job that already ended stays as it was.

        Raises:
            JobNotFound: no job has that id.
        """
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if self.now() - job.started_at < job.duration_s:
            job.cancelled = True

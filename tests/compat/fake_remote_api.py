"""A fake remote job API for the Steamship-style plugin tests (no network, no waiting)."""

from __future__ import annotations

from typing import Any


class RemoteJobError(Exception):
    """What the fake remote API reports for a job that failed."""


class FakeApi:
    """A remote job API: a job completes after `checks_needed` status look-ups; the input
    "explode" makes a job that fails."""

    def __init__(self, checks_needed: int = 3) -> None:
        self.checks_needed = checks_needed
        self.started: list[Any] = []
        self.looks: dict[str, int] = {}

    def do_something(self, data: Any) -> str:
        """Starts a job on `data`; returns its id."""
        self.started.append(data)
        job_id = f"job-{len(self.started)}"
        self.looks[job_id] = 0
        return job_id

    def has_failed(self, job_id: str) -> bool:
        """True for a job started on "explode"."""
        return bool(self.started[int(job_id.removeprefix("job-")) - 1] == "explode")

    def error_of(self, job_id: str) -> Exception:
        """The error a failed job reports."""
        return RemoteJobError(f"{job_id}: GPU out of memory")

    def is_complete(self, job_id: str) -> bool:
        """One status look-up: True from the `checks_needed`-th on."""
        self.looks[job_id] += 1
        return self.looks[job_id] >= self.checks_needed

"""An asynchronous plugin on the generic envelope (PluginService/Invoke) with a dict payload.

Input: {"duration_s": 30, "fail": false, "hint": true} (all optional; "hint": false leaves the
check-after hint out of RUNNING answers, so the engine's own backoff alone sets the pace). The
first call starts a simulated remote job and answers RUNNING; status checks report progress
until the job ends with {"job_id": ..., "duration_s": ...} or FAILED. The engine demo drives
this one.

    asyncplugin serve server.slow_job:SlowJob --port 50051
"""

from __future__ import annotations

import contextlib
from typing import Any

import grpc

from asyncplugin import PluginError, Progress, Request, Response, Task, TaskState
from asyncplugin.plugin import AsyncPlugin, remote_status_input
from server.fake_remote import FakeRemote, JobNotFound

Payload = dict[str, Any]


class SlowJob(AsyncPlugin[Payload, Payload]):
    """Runs one simulated remote job per task; its length and outcome come from the payload."""

    def __init__(self, remote: FakeRemote | None = None) -> None:
        self.remote = remote if remote is not None else FakeRemote.from_env()

    async def initiate_work(self, request: Request[Payload]) -> Response[Payload]:
        """Starts the job (once per idempotency key) and answers RUNNING."""
        duration_s = request.data.get("duration_s")
        fail = request.data.get("fail")
        if duration_s is not None and (
            not isinstance(duration_s, int | float) or isinstance(duration_s, bool)
        ):
            raise PluginError(
                message="duration_s must be a number of seconds.",
                suggestion='Send for example {"duration_s": 30}.',
                code="INVALID_DURATION",
                rpc_code=grpc.StatusCode.INVALID_ARGUMENT,
            )
        job_id = await self.remote.submit(
            request.data,
            idempotency_key=request.context.idempotency_key,
            duration_s=None if duration_s is None else float(duration_s),
            fail=None if fail is None else bool(fail),
        )
        first_check_s = self.remote.job_duration_s if duration_s is None else float(duration_s)
        return _running(job_id, 0.0, first_check_s if _wants_hint(request) else None)

    async def check_status(self, request: Request[Payload]) -> Response[Payload]:
        """Polls the job: RUNNING with progress, the result, or FAILED."""
        job_id = str(remote_status_input(request).get("job_id", ""))
        try:
            job = await self.remote.poll(job_id)
        except JobNotFound as err:
            raise PluginError(
                message="The job was lost.",
                suggestion="Submit it again.",
                code="REMOTE_JOB_NOT_FOUND",
                error=err,
            ) from err
        if job.state == "failed":
            raise PluginError(
                message="The job failed.",
                suggestion="Try again; jobs with fail=true always fail.",
                code="REMOTE_JOB_FAILED",
                error=job.error,
            )
        if job.state == "running":
            return _running(job_id, job.fraction, job.remaining_s if _wants_hint(request) else None)
        duration_s = request.data.get("duration_s", self.remote.job_duration_s)
        return Response(data={"job_id": job_id, "duration_s": duration_s})

    async def cancel_work(self, request: Request[Payload]) -> Response[Payload]:
        """Stops the job and answers CANCELLED."""
        job_id = str(remote_status_input(request).get("job_id", ""))
        with contextlib.suppress(JobNotFound):  # a lost job has nothing left to stop
            await self.remote.cancel(job_id)
        return Response(status=Task(state=TaskState.CANCELLED))


def _wants_hint(request: Request[Payload]) -> bool:
    return request.data.get("hint", True) is not False


def _running(job_id: str, fraction: float, check_after_s: float | None) -> Response[Payload]:
    return Response(
        status=Task(
            state=TaskState.RUNNING,
            remote_status_input={"job_id": job_id},
            progress=Progress(fraction=fraction, stage="working"),
            check_after_s=check_after_s,
        )
    )

"""An asynchronous plugin with a typed RPC: TranscriberService/Transcribe over a slow remote API.

The first call starts a remote job and answers RUNNING with the job id in
`remote_status_input`; each status check polls the job and answers RUNNING with progress, the
Transcript when the job is done, or FAILED when the job failed.

Serve it from the repository root (job length and failure rate from ASYNCPLUGIN_FAKE_*, see
server/fake_remote.py):

    asyncplugin serve server.transcriber:Transcriber --port 50051
"""

from __future__ import annotations

import contextlib
import random
import zlib
from collections.abc import Mapping
from typing import Any

import grpc

from asyncplugin import PluginError, Progress, Request, Response, Task, TaskState
from asyncplugin.examples.v1.transcriber_pb2 import TranscribeInput, Transcript
from asyncplugin.plugin import AsyncPlugin, remote_status_input
from server.fake_remote import FakeRemote, JobNotFound

_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "engineers",
    "talk", "about", "asynchronous", "plugins", "polling", "remote", "jobs", "with", "backoff",
)  # fmt: skip


def fake_transcribe(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A deterministic "transcript" of the audio at spec["audio_url"]."""
    rng = random.Random(zlib.crc32(str(spec.get("audio_url", "")).encode()))
    words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 20))]
    return {"text": " ".join(words).capitalize() + ".", "word_count": len(words)}


class Transcriber(AsyncPlugin[TranscribeInput, Transcript]):
    """Transcribes audio through a (simulated) third-party job API."""

    rpc_method = "/asyncplugin.examples.v1.TranscriberService/Transcribe"

    def __init__(self, remote: FakeRemote | None = None) -> None:
        self.remote = remote if remote is not None else FakeRemote.from_env(work=fake_transcribe)

    async def initiate_work(self, request: Request[TranscribeInput]) -> Response[Transcript]:
        """Starts the remote job (once per idempotency key) and answers RUNNING."""
        if not request.data.audio_url:
            raise PluginError(
                message="No audio to transcribe.",
                suggestion="Set audio_url to the address of a WAV or MP3 file.",
                code="MISSING_AUDIO_URL",
                rpc_code=grpc.StatusCode.INVALID_ARGUMENT,
            )
        job_id = await self.remote.submit(
            {"audio_url": request.data.audio_url, "language": request.data.language},
            idempotency_key=request.context.idempotency_key,
        )
        return _running(job_id, fraction=0.0, check_after_s=self.remote.job_duration_s)

    async def check_status(self, request: Request[TranscribeInput]) -> Response[Transcript]:
        """Polls the remote job: RUNNING with progress, the Transcript, or FAILED."""
        job_id = str(remote_status_input(request).get("remote_job_id", ""))
        try:
            job = await self.remote.poll(job_id)
        except JobNotFound as err:
            raise PluginError(
                message="The transcription job was lost.",
                suggestion="Submit the audio again.",
                code="REMOTE_JOB_NOT_FOUND",
                rpc_code=grpc.StatusCode.NOT_FOUND,
                metadata={"remote_job_id": job_id},
                error=err,
            ) from err
        if job.state == "succeeded" and job.output is not None:
            return Response(data=Transcript(**job.output))
        if job.state == "failed":
            raise PluginError(
                message="The transcription service could not process the audio.",
                suggestion="Check that the file plays, then try again.",
                code="REMOTE_JOB_FAILED",
                rpc_code=grpc.StatusCode.ABORTED,
                metadata={"remote_job_id": job_id},
                error=job.error,
            )
        return _running(
            job_id, fraction=job.fraction, check_after_s=job.remaining_s, message=job.message
        )

    async def cancel_work(self, request: Request[TranscribeInput]) -> Response[Transcript]:
        """Stops the remote job and answers CANCELLED."""
        job_id = str(remote_status_input(request).get("remote_job_id", ""))
        with contextlib.suppress(JobNotFound):  # a lost job has nothing left to stop
            await self.remote.cancel(job_id)
        return Response(status=Task(state=TaskState.CANCELLED))


def _running(
    job_id: str, *, fraction: float, check_after_s: float, message: str = ""
) -> Response[Transcript]:
    return Response(
        status=Task(
            state=TaskState.RUNNING,
            remote_status_input={"remote_job_id": job_id},
            progress=Progress(fraction=fraction, stage="transcribing"),
            check_after_s=check_after_s,
            remote_status_message=message,
            status_message=f"Transcribing: {fraction:.0%} done",
        )
    )

"""The example plugins in server/, driven in-process with a fake clock (no wall-clock waits)."""

from __future__ import annotations

from typing import Any

import grpc

from asyncplugin.examples.v1 import transcriber_pb2_grpc
from asyncplugin.examples.v1.transcriber_pb2 import TranscribeInput, TranscribeRequest, Transcript
from asyncplugin.plugin import PLUGIN_INTERNAL_ERROR, CallResult, serve_in_process
from asyncplugin.protocol import PluginError, RequestContext, TaskState, decode_payload
from asyncplugin.v1 import plugin_pb2, task_pb2
from server.echo import Echo
from server.failing import Failing
from server.fake_remote import FakeRemote
from server.slow_job import SlowJob
from server.transcriber import Transcriber, fake_transcribe
from tests.plugin.conftest import FakeClock, StartServer

AUDIO = TranscribeInput(audio_url="https://example.com/talk.wav", language="en-GB")


def _transcriber(clock: FakeClock, **remote: Any) -> Transcriber:
    return Transcriber(FakeRemote(now=clock.now, work=fake_transcribe, **remote))


async def test_echo_answers_at_once(start_server: StartServer) -> None:
    """The synchronous example answers SUCCEEDED with its input on the first call."""
    served = await start_server(Echo())
    response = await served.invoke({"text": "hi"})
    assert decode_payload(response.data, dict) == {"echo": {"text": "hi"}}


async def test_transcriber_runs_then_succeeds_on_fake_clock(clock: FakeClock) -> None:
    """Transcribe answers RUNNING with a job id and progress, then the Transcript once the
    remote job is done on the injected clock."""
    async with serve_in_process(_transcriber(clock, job_duration_s=60)) as client:
        first = await client.start(AUDIO)
        assert first.state is TaskState.RUNNING
        assert first.status is not None
        job_id = (first.status.remote_status_input or {})["remote_job_id"]
        assert first.status.check_after_s == 60
        clock.advance(30)
        middle = await client.check(first)
        assert middle.state is TaskState.RUNNING
        assert middle.status is not None
        assert middle.status.progress is not None
        assert middle.status.progress.fraction == 0.5
        assert middle.status.remote_status_input == {"remote_job_id": job_id}
        clock.advance(30)
        done = await client.check(middle)
    assert done.state is TaskState.SUCCEEDED
    assert isinstance(done.data, Transcript)
    assert done.data.word_count == len(done.data.text.split()) > 0


async def test_transcriber_typed_stub_conversation(
    start_server: StartServer, clock: FakeClock
) -> None:
    """The generated TranscriberService stub drives a whole start + status check conversation."""
    served = await start_server(_transcriber(clock, job_duration_s=5))
    stub = transcriber_pb2_grpc.TranscriberServiceStub(served.channel)
    context = plugin_pb2.RequestContext(task_id="t-9", idempotency_key="k-9")
    first = await stub.Transcribe(TranscribeRequest(data=AUDIO, context=context), timeout=10)
    assert first.status.state == task_pb2.TASK_STATE_RUNNING
    clock.advance(5)
    context.check_number = 1
    check = TranscribeRequest(data=AUDIO, context=context, status=first.status)
    check.is_status_check = True
    second = await stub.Transcribe(check, timeout=10)
    assert second.HasField("data")
    assert second.data.text


async def test_transcriber_start_is_idempotent(clock: FakeClock) -> None:
    """A repeated initiating call with the same idempotency key reuses the same remote job."""
    remote = FakeRemote(now=clock.now, work=fake_transcribe)
    context = RequestContext(task_id="t-1", idempotency_key="same-key")
    async with serve_in_process(Transcriber(remote)) as client:
        first = await client.start(AUDIO, context=context)
        again = await client.start(AUDIO, context=context)
    assert first.status is not None
    assert again.status is not None
    assert first.status.remote_status_input == again.status.remote_status_input
    assert remote.jobs_started == 1


async def test_transcriber_remote_failure_is_failed(clock: FakeClock) -> None:
    """A remote job that fails ends the task FAILED with a wrapped cause, no RUNNING forever."""
    plugin = _transcriber(clock, job_duration_s=10, failure_rate=1.0)
    async with serve_in_process(plugin) as client:
        result = await client.run_until_done(AUDIO, between_checks=lambda r: clock.advance(10))
    assert result.state is TaskState.FAILED
    assert result.error is not None
    assert result.error.code == "REMOTE_JOB_FAILED"
    assert result.error.error == "worker exited with status 137 (out of memory)"


async def test_transcriber_cancel_stops_remote_job(clock: FakeClock) -> None:
    """A cancel request stops the remote job and is answered CANCELLED."""
    remote = FakeRemote(now=clock.now, work=fake_transcribe, job_duration_s=60)
    async with serve_in_process(Transcriber(remote)) as client:
        first = await client.start(AUDIO)
        cancelled = await client.cancel(first)
        clock.advance(60)
        assert first.status is not None
        job_id = (first.status.remote_status_input or {})["remote_job_id"]
        assert (await remote.poll(job_id)).state == "cancelled"
    assert cancelled.state is TaskState.CANCELLED


async def test_transcriber_needs_audio_url(clock: FakeClock) -> None:
    """An empty audio_url is FAILED MISSING_AUDIO_URL with a suggestion, not a crash."""
    async with serve_in_process(_transcriber(clock)) as client:
        result = await client.start(TranscribeInput())
    assert result.state is TaskState.FAILED
    assert result.error is not None
    assert result.error.code == "MISSING_AUDIO_URL"
    assert result.error.suggestion


async def test_slow_job_generic_envelope_to_completion(clock: FakeClock) -> None:
    """The dict-payload slow job runs for duration_s on the fake clock, then SUCCEEDS."""
    async with serve_in_process(SlowJob(FakeRemote(now=clock.now))) as client:
        checks: list[CallResult[dict[str, Any]]] = []

        def advance(result: CallResult[dict[str, Any]]) -> None:
            checks.append(result)
            clock.advance(10)

        result = await client.run_until_done({"duration_s": 30}, between_checks=advance)
    assert result.state is TaskState.SUCCEEDED
    assert result.data is not None
    assert result.data["duration_s"] == 30
    assert len(checks) == 3


async def test_slow_job_fail_flag_fails(clock: FakeClock) -> None:
    """{"fail": true} makes the slow job end FAILED with code REMOTE_JOB_FAILED."""
    async with serve_in_process(SlowJob(FakeRemote(now=clock.now))) as client:
        result = await client.run_until_done(
            {"duration_s": 1, "fail": True}, between_checks=lambda r: clock.advance(1)
        )
    assert result.state is TaskState.FAILED
    assert result.error is not None
    assert result.error.code == "REMOTE_JOB_FAILED"


async def test_failing_plugin_sends_full_envelope() -> None:
    """The failing example answers FAILED with message, suggestion, code and wrapped errors."""
    async with serve_in_process(Failing()) as client:
        result = await client.start({})
    assert result.state is TaskState.FAILED
    assert result.status is not None
    assert result.status.status_code == "REMOTE_QUOTA_EXCEEDED"
    error = result.error
    assert error is not None
    assert error.message.startswith("The report could not be generated")
    assert error.suggestion.startswith("Try again after midnight UTC")
    assert error.rpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.internal_message == "reports API answered 429 to POST /v2/reports"
    assert error.metadata == {"quota_per_day": "100"}
    cause = error.error
    assert isinstance(cause, PluginError)
    assert cause.code == "HTTP_429"
    assert cause.error == "ConnectionRefusedError: 429 Too Many Requests"


async def test_failing_plugin_crash_is_safe() -> None:
    """The crash mode is FAILED PLUGIN_INTERNAL_ERROR without the exception's secret text."""
    async with serve_in_process(Failing()) as client:
        result = await client.start({"mode": "crash"})
    assert result.error is not None
    assert result.error.code == PLUGIN_INTERNAL_ERROR
    assert b"secret-token-123" not in result.response.SerializeToString()


async def test_fake_remote_is_deterministic_with_a_seed(clock: FakeClock) -> None:
    """The same seed gives the same job ids and the same failures."""

    async def outcomes(seed: int) -> list[tuple[str, str]]:
        remote = FakeRemote(now=clock.now, seed=seed, failure_rate=0.5, job_duration_s=1)
        ids = [await remote.submit({"n": n}) for n in range(20)]
        clock.advance(1)
        return [(job_id, (await remote.poll(job_id)).state) for job_id in ids]

    first, second = await outcomes(7), await outcomes(7)
    assert first == second
    assert {state for _, state in first} == {"succeeded", "failed"}

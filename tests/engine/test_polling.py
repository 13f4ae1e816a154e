"""Integration over real gRPC: the engine drives plugins from initiation to a final state."""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest

from asyncplugin.engine import (
    BearerTokens,
    CallKind,
    CheckOutcome,
    FakeClock,
    GrpcTransport,
    PollingPolicy,
    TaskOptions,
    TaskUpdate,
    next_interval,
)
from asyncplugin.examples.v1 import transcriber_pb2
from asyncplugin.protocol import TaskState, dict_to_struct, struct_to_dict
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2
from tests.engine.conftest import POLICY, SEED, MakeEngine, Serve
from tests.engine.plugins import Answer, Job, constant, done, failed


async def test_sync_answer_succeeds_with_one_call(make_engine: MakeEngine, serve: Serve) -> None:
    """A plugin answering data at once: SUCCEEDED with that data, one initiating call, no checks."""
    plugin = await serve(constant(done(b"result-bytes")))
    engine = await make_engine()
    record = await engine.invoke(plugin.target, payload={"text": "hi"})
    assert record.state is TaskState.SUCCEEDED
    assert record.result == b"result-bytes"
    assert record.check_count == 0
    [request] = plugin.calls()
    assert not request.is_status_check
    assert request.context.check_number == 0
    assert request.context.task_id == record.task_id
    assert not request.HasField("status")
    [entry] = await engine.checks(record.task_id)
    assert (entry.kind, entry.outcome, entry.next_check_time) == (
        CallKind.INITIATE,
        CheckOutcome.SUCCEEDED,
        None,
    )


async def test_async_answer_follows_the_policy_schedule(
    make_engine: MakeEngine, serve: Serve, clock: FakeClock
) -> None:
    """RUNNING, then N checks at exactly the intervals the pure policy gives for the seeded rng;
    check numbers count up, the key never changes, each updated remote_status_input is echoed."""
    checks = 5
    plugin = await serve(Job(checks=checks, result=b"transcript"))
    engine = await make_engine()
    start = clock.now()
    wall = time.monotonic()
    record = await engine.invoke(plugin.target, payload={"audio": "a.wav"})
    assert record.state is TaskState.SUCCEEDED
    assert record.result == b"transcript"
    assert record.check_count == checks

    rng = random.Random(SEED)
    expected = [next_interval(n, POLICY, rng)[0] for n in range(1, checks + 1)]
    history = await engine.checks(record.task_id)
    assert [entry.check_number for entry in history] == list(range(checks + 1))
    assert [entry.interval_s for entry in history[:-1]] == pytest.approx(expected)
    assert all(entry.reason.startswith("backoff ") for entry in history[:-1])
    for before, after in itertools.pairwise(history):
        assert after.started_time == pytest.approx(before.finished_time + (before.interval_s or 0))
    assert clock.now() - start == pytest.approx(sum(expected))
    assert time.monotonic() - wall < 5

    requests = plugin.calls()
    assert [r.context.check_number for r in requests] == list(range(checks + 1))
    assert [r.is_status_check for r in requests] == [False] + [True] * checks
    assert len({r.context.idempotency_key for r in requests}) == 1
    assert {r.data for r in requests} == {record.payload}
    for number, request in enumerate(requests[1:], start=1):
        echoed = struct_to_dict(request.status.remote_status_input)
        assert echoed == {"job": record.idempotency_key, "step": number - 1}
        assert request.status.task_id == record.task_id
        assert request.status.check_count == number - 1


async def test_hint_is_honoured_and_clamped(make_engine: MakeEngine, serve: Serve) -> None:
    """check_after hints set the interval (5 s as is; 500 s clamped to max; 0 s to min)."""
    policy = PollingPolicy(max_interval_s=20.0, min_interval_s=0.5, check_timeout_s=5.0)
    plugin = await serve(Job(checks=3, hints=[5.0, 500.0, 0.0]))
    engine = await make_engine(policy=policy)
    record = await engine.invoke(plugin.target)
    history = await engine.checks(record.task_id)
    assert [(entry.interval_s, entry.reason) for entry in history[:3]] == [
        (5.0, "plugin hint 5s"),
        (20.0, "plugin hint 500s clamped to max 20s"),
        (0.5, "plugin hint 0s clamped to min 0.5s"),
    ]
    gaps = [
        after.started_time - before.finished_time for before, after in itertools.pairwise(history)
    ]
    assert gaps == pytest.approx([5.0, 20.0, 0.5])


async def test_failed_answer_records_the_envelope(make_engine: MakeEngine, serve: Serve) -> None:
    """A FAILED answer after a check records FAILED with the plugin's error envelope, exactly."""
    error = error_pb2.Error(
        message="The audio file could not be decoded.",
        internal_message="ffmpeg exit 1",
        suggestion="Upload a WAV or MP3 file.",
        code="UNSUPPORTED_AUDIO_FORMAT",
        rpc_code=3,
        domain="transcriber.example.com",
        metadata={"format": "ogg"},
        wrapped_error=error_pb2.Error(message="codec missing"),
    )

    async def behave(request: plugin_pb2.InvokeRequest) -> Answer:
        return failed(error) if request.is_status_check else await Job()(request)

    plugin = await serve(behave)
    engine = await make_engine()
    record = await engine.invoke(plugin.target)
    assert record.state is TaskState.FAILED
    assert record.error_proto() == error
    envelope = record.error_envelope
    assert envelope is not None
    assert (envelope.code, envelope.suggestion) == ("UNSUPPORTED_AUDIO_FORMAT", error.suggestion)
    task = record.task
    assert task is not None
    assert task.status_code == "UNSUPPORTED_AUDIO_FORMAT"
    outcomes = [entry.outcome for entry in await engine.checks(record.task_id)]
    assert outcomes == [CheckOutcome.RUNNING, CheckOutcome.FAILED]


async def test_typed_rpc_is_driven_by_method_path(make_engine: MakeEngine, serve: Serve) -> None:
    """A plugin's own typed method works: typed payload in, typed result out, same envelope."""
    method = "/asyncplugin.examples.v1.TranscriberService/Transcribe"
    seen: list[transcriber_pb2.TranscribeRequest] = []

    async def transcribe(request: plugin_pb2.InvokeRequest) -> Answer:
        typed = transcriber_pb2.TranscribeRequest.FromString(request.SerializeToString())
        seen.append(typed)
        if not typed.is_status_check:
            response = transcriber_pb2.TranscribeResponse()
            response.status.state = task_pb2.TASK_STATE_RUNNING
            response.status.remote_status_input.CopyFrom(
                dict_to_struct({"url": typed.data.audio_url})
            )
            return response.SerializeToString()
        text = f"transcript of {typed.status.remote_status_input['url']}"
        return transcriber_pb2.TranscribeResponse(
            data=transcriber_pb2.Transcript(text=text, word_count=3)
        ).SerializeToString()

    plugin = await serve({method: transcribe})
    engine = await make_engine()
    payload = transcriber_pb2.TranscribeInput(audio_url="https://x/a.wav", language="en")
    record = await engine.invoke(plugin.target, method=method, payload=payload)
    assert record.state is TaskState.SUCCEEDED
    result = record.result_as(transcriber_pb2.Transcript)
    assert result == transcriber_pb2.Transcript(text="transcript of https://x/a.wav", word_count=3)
    assert [typed.data for typed in seen] == [payload, payload]


async def test_many_tasks_on_many_plugins_run_concurrently(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """60 tasks over 3 plugins with 4 RPCs at most in flight all finish with their own results."""
    in_flight = 0
    peak = 0

    def counting(job: Job) -> Job:
        class Counted(Job):
            async def __call__(self, request: plugin_pb2.InvokeRequest) -> Answer:
                nonlocal in_flight, peak
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.001)
                in_flight -= 1
                return await super().__call__(request)

        return Counted(checks=job.checks, result=job.result)

    plugins = [await serve(counting(Job(checks=n, result=str(n).encode()))) for n in (0, 2, 4)]
    engine = await make_engine(max_concurrent_rpcs=4)
    ids = [(await engine.submit(plugins[i % 3].target, payload={"i": i}), i % 3) for i in range(60)]
    records = [await engine.wait(task_id) for task_id, _ in ids]
    assert all(r.state is TaskState.SUCCEEDED for r in records)
    assert [r.result for r in records] == [str((0, 2, 4)[p]).encode() for _, p in ids]
    assert peak <= 4
    assert engine._locks == {}  # per-task locks are dropped once tasks finish


async def test_deadline_and_identities_reach_the_plugin(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """RequestContext carries plugin ids, a caller's idempotency key and the deadline; call
    metadata carries the transport's bearer token and the task's extra pairs."""
    plugin = await serve(constant(done(b"ok")))
    transport = GrpcTransport(metadata_provider=BearerTokens({plugin.target: "s3cret"}))
    engine = await make_engine(transport=transport)
    options = TaskOptions(
        plugin_id="transcriber",
        plugin_instance_id="eu-1",
        idempotency_key="caller-key",
        deadline_s=120.0,
        metadata=(("x-team", "speech"),),
    )
    record = await engine.invoke(plugin.target, payload=b"raw", options=options)
    await transport.close()
    [request] = plugin.calls()
    context = request.context
    assert (context.plugin_id, context.plugin_instance_id) == ("transcriber", "eu-1")
    assert context.idempotency_key == "caller-key"
    assert context.deadline.ToNanoseconds() / 1e9 == pytest.approx(record.create_time + 120.0)
    assert context.engine.startswith("asyncplugin-python")
    assert request.data == b"raw"
    [metadata] = plugin.metadata
    assert metadata["authorization"] == "Bearer s3cret"
    assert metadata["x-team"] == "speech"


async def test_on_change_and_watch_report_progress(make_engine: MakeEngine, serve: Serve) -> None:
    """Listeners see every recorded change: state, checks done, next check time, messages."""
    hooked: list[TaskUpdate] = []
    plugin = await serve(Job(checks=2))
    engine = await make_engine(on_change=hooked.append)
    task_id = await engine.submit(plugin.target)
    watched = [update async for update in engine.watch(task_id)]
    assert watched[0].record.state is TaskState.WAITING
    assert watched[-1].record.state is TaskState.SUCCEEDED
    running = [u for u in watched if u.record.state is TaskState.RUNNING]
    assert [u.record.check_count for u in running] == [0, 1]
    assert all(u.record.next_check_time is not None for u in running)
    assert [u.check.message for u in running if u.check] == ["step 0", "step 1"]
    task = running[-1].record.task
    assert task is not None
    assert task.status_message == "step 1"
    assert [u.record.state for u in hooked] == [u.record.state for u in watched]

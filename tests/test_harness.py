"""asyncplugin.testing drives a plugin through the real engine on a fake clock."""

from __future__ import annotations

import random
import time

from asyncplugin import PollingPolicy, TaskState
from asyncplugin.engine import FakeClock, next_interval
from asyncplugin.examples.v1.transcriber_pb2 import TranscribeInput, Transcript
from asyncplugin.testing import PluginHarness
from server.fake_remote import FakeRemote
from server.slow_job import SlowJob
from server.transcriber import Transcriber, fake_transcribe

POLICY = PollingPolicy(
    initial_interval_s=1.0, multiplier=2.0, max_interval_s=600.0, jitter=0.1, deadline_s=7200.0
)


def _slow_job(clock: FakeClock) -> SlowJob:
    return SlowJob(FakeRemote(now=clock.now))


async def test_an_hour_of_backoff_runs_in_well_under_a_second() -> None:
    """A one-hour job is polled on the engine's schedule in simulated time, not wall time."""
    remotes: list[FakeRemote] = []

    def slow_job(clock: FakeClock) -> SlowJob:
        remotes.append(FakeRemote(now=clock.now))
        return SlowJob(remotes[-1])

    started = time.perf_counter()
    async with PluginHarness(slow_job, policy=POLICY, seed=7) as harness:
        result = await harness.run({"duration_s": 3600, "hint": False})
    wall_s = time.perf_counter() - started
    assert result.state is TaskState.SUCCEEDED
    # The result names the one job the plugin started, the id it stashed when it went RUNNING.
    [remote] = remotes
    assert remote.jobs_started == 1
    first = result.answers[0]
    assert first.state is TaskState.RUNNING
    assert first.remote_status_input is not None
    job_id = first.remote_status_input["job_id"]
    assert str(job_id).startswith("job-")
    assert result.data == {"job_id": job_id, "duration_s": 3600}
    assert wall_s < 5.0
    rng = random.Random(7)
    expected = [next_interval(n, POLICY, rng, None)[0] for n in range(1, len(result.intervals) + 1)]
    assert result.intervals == expected
    assert sum(result.intervals) >= 3600


async def test_answers_show_progress_and_echoed_remote_input() -> None:
    """Every RUNNING answer is captured with its progress and the job id the plugin stashed."""
    async with PluginHarness(_slow_job, policy=POLICY) as harness:
        result = await harness.run({"duration_s": 20, "hint": False})
    running = [task for task in result.answers if task.state is TaskState.RUNNING]
    assert len(running) == result.check_count
    job_ids = {task.remote_status_input["job_id"] for task in running if task.remote_status_input}
    assert job_ids == {result.data["job_id"]}
    fractions = [task.progress.fraction or 0.0 for task in running if task.progress is not None]
    assert len(fractions) == len(running)
    assert fractions == sorted(fractions)


async def test_typed_plugin_result_is_decoded() -> None:
    """A typed plugin's result comes back as its output message."""
    async with PluginHarness(
        lambda clock: Transcriber(FakeRemote(now=clock.now, work=fake_transcribe))
    ) as harness:
        result = await harness.run(TranscribeInput(audio_url="https://example.com/a.wav"))
    assert result.state is TaskState.SUCCEEDED
    assert isinstance(result.data, Transcript)
    assert result.data.word_count > 0


async def test_cancel_after_reaches_the_plugin() -> None:
    """cancel_after_s cancels in simulated time and the history shows the cancel request."""
    async with PluginHarness(_slow_job, policy=POLICY) as harness:
        result = await harness.run({"duration_s": 600, "hint": False}, cancel_after_s=30)
    assert result.state is TaskState.CANCELLED
    assert any(str(check.kind) == "CANCEL" for check in result.checks)

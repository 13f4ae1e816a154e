"""The worked port of docs/migrating-from-steamship.md, run from the page through the engine.

The page's `# transcriber_port.py` block is a Steamship transcriber-style base class with
abstract methods and pydantic payloads, ported by changing its imports. It is read from the page
(so the page cannot drift from what works), loaded as the module `transcriber_port`, and a
concrete subclass over a fake speech-to-text service is driven through the real engine on a
fake clock.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from asyncplugin import PollingPolicy, TaskState
from asyncplugin.cli import UsageError, main
from asyncplugin.cli.serve import load_plugin
from asyncplugin.engine import FakeClock
from asyncplugin.plugin import INVALID_PAYLOAD
from asyncplugin.testing import PluginHarness

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-steamship.md"
POLICY = PollingPolicy(initial_interval_s=1.0, multiplier=2.0, max_interval_s=60.0, jitter=0.1)


def port_source() -> str:
    """The page's `# transcriber_port.py` code block."""
    blocks = re.findall(r"```python\n# transcriber_port\.py\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "the page must hold exactly one transcriber_port.py block"
    source: str = blocks[0]
    return source


@pytest.fixture(scope="module")
def port() -> Iterator[Any]:
    """The page's port, loaded as the importable module `transcriber_port`."""
    module = types.ModuleType("transcriber_port")
    sys.modules["transcriber_port"] = module
    try:
        exec(compile(port_source(), str(DOC), "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules["transcriber_port"]


class RemoteJobError(Exception):
    """What the fake service raises for a job that failed."""


class FakeSpeechService:
    """A speech-to-text service on simulated time: a job is done `duration_s` after it starts.

    An audio URL containing "corrupt" makes a job that fails; one containing "noid" gets no job
    id back (the service's bug the base class must survive).
    """

    def __init__(self, clock: FakeClock, duration_s: float = 20.0) -> None:
        self.clock = clock
        self.duration_s = duration_s
        self.jobs: dict[str, tuple[str, float]] = {}
        self.polls = 0

    def create(self, url: str, language: str) -> str:
        if "noid" in url:
            return ""
        job_id = f"j-{len(self.jobs) + 1}"
        self.jobs[job_id] = (f"{language}: words of {url}", self.clock.now() + self.duration_s)
        return job_id

    def get(self, job_id: str) -> str | None:
        self.polls += 1
        text, ready_at = self.jobs[job_id]
        if "corrupt" in text:
            raise RemoteJobError(f"{job_id}: cannot decode audio")
        return text if self.clock.now() >= ready_at else None


def concrete(port: Any) -> type:
    """A concrete transcriber over the fake service (what a plugin author writes)."""

    class FakeTranscriber(port.RemoteTranscriber):  # type: ignore[misc]
        def __init__(self, service: FakeSpeechService) -> None:
            super().__init__()
            self.service = service

        def start_transcription(self, audio_url: str, language: str) -> str:
            return self.service.create(audio_url, language)

        def poll_transcription(self, job_id: str) -> str | None:
            return self.service.get(job_id)

    return FakeTranscriber


async def test_concrete_subclass_succeeds_after_several_checks(port: Any) -> None:
    """New work is RUNNING with the job id; status checks poll until the transcript is ready;
    the result is the pydantic output model."""
    services: list[FakeSpeechService] = []

    def make(clock: FakeClock) -> Any:
        services.append(FakeSpeechService(clock))
        return concrete(port)(services[-1])

    async with PluginHarness(make, policy=POLICY, seed=3) as harness:
        payload = port.TranscribeInput(audio_url="https://example.com/talk.wav", language="de")
        result = await harness.run(payload)
    assert result.state is TaskState.SUCCEEDED
    assert isinstance(result.data, port.Transcript)
    assert result.data.text == "de: words of https://example.com/talk.wav"
    assert result.data.word_count == 4
    assert result.check_count >= 3
    assert services[0].polls == result.check_count
    assert sum(result.intervals) >= 20.0
    first = result.answers[0]
    assert first.state is TaskState.RUNNING
    assert first.remote_status_input == {"job_id": "j-1"}
    later = result.answers[1]
    assert later.remote_status_message == "Transcription job ongoing."


async def test_failed_remote_job_fails_with_message_and_wrapped_error(port: Any) -> None:
    """The service's error is wrapped in the SteamshipError the base raises: FAILED, with the
    message and the wrapped error recorded by the engine."""
    async with PluginHarness(
        lambda clock: concrete(port)(FakeSpeechService(clock)), policy=POLICY
    ) as harness:
        result = await harness.run(port.TranscribeInput(audio_url="https://x/corrupt.wav"))
    assert result.state is TaskState.FAILED
    assert result.error is not None
    assert result.error.message == "The transcription failed."
    assert result.error.error == "RemoteJobError: j-1: cannot decode audio"
    assert result.check_count == 1


async def test_missing_job_id_fails_the_status_check(port: Any) -> None:
    """The service returned no job id: the first status check raises, and the task FAILS with
    the base class's message."""
    async with PluginHarness(
        lambda clock: concrete(port)(FakeSpeechService(clock)), policy=POLICY
    ) as harness:
        result = await harness.run(port.TranscribeInput(audio_url="https://x/noid.wav"))
    assert result.state is TaskState.FAILED
    assert result.error is not None
    assert result.error.message == "Status check requests need to provide a valid job id"
    assert result.answers[0].remote_status_input == {"job_id": ""}


async def test_payload_failing_validation_is_invalid_argument_naming_the_field(
    port: Any,
) -> None:
    """A payload without `audio_url` never reaches `run`: the plugin refuses it with
    INVALID_ARGUMENT naming data.audio_url, and the engine fails the task with that envelope."""
    service: list[FakeSpeechService] = []

    def make(clock: FakeClock) -> Any:
        service.append(FakeSpeechService(clock))
        return concrete(port)(service[-1])

    async with PluginHarness(make, policy=POLICY) as harness:
        result = await harness.run({"language": "en", "audio_url": None})
        missing = await harness.run({"language": "en"})
    for outcome, problem in ((result, "Input should be a valid string"), (missing, "required")):
        assert outcome.state is TaskState.FAILED
        error = outcome.error
        assert error is not None
        assert error.code == INVALID_PAYLOAD
        assert error.rpc_code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.metadata["field"] == "data.audio_url"
        assert "data.audio_url" in error.message
        assert problem in error.message
        assert "transcriber_port.TranscribeInput" in error.message
    assert service[0].jobs == {}


def test_abstract_base_is_refused_naming_its_abstract_methods(port: Any) -> None:
    """`asyncplugin serve` refuses the abstract base before creating it, naming both methods."""
    with pytest.raises(UsageError) as caught:
        load_plugin("transcriber_port:RemoteTranscriber")
    message = str(caught.value)
    assert "methods poll_transcription, start_transcription are abstract" in message
    assert "\n" not in message


def test_subclass_missing_one_method_is_refused_naming_it(
    port: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subclass that implements only one of the two is refused with one line naming the
    other; the command exits 2 without a traceback."""

    class HalfDone(port.RemoteTranscriber):  # type: ignore[misc]
        def start_transcription(self, audio_url: str, language: str) -> str:
            return "j-1"

    port.HalfDone = HalfDone
    try:
        assert main(["serve", "transcriber_port:HalfDone", "--port", "0"]) == 2
    finally:
        del port.HalfDone
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "method poll_transcription is abstract" in err
    assert "Traceback" not in err

"""A plugin in the documented Steamship style, changed only in its imports, through the engine.

`tests/compat/some_plugin.py` holds the example from Steamship's documentation of asynchronous
plugins with only its import lines changed; here it runs through the real engine (on a fake
clock) against a fake remote API that completes after a few checks.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from asyncplugin import PollingPolicy
from asyncplugin import TaskState as SdkTaskState
from asyncplugin.compat.steamship import PluginRequest, Response, Task
from asyncplugin.engine import CallKind, CheckOutcome
from asyncplugin.plugin import CANCEL_NOT_HANDLED, INVALID_PLUGIN_RESPONSE
from asyncplugin.testing import PluginHarness
from tests.compat import some_plugin
from tests.compat.fake_remote_api import FakeApi
from tests.compat.some_plugin import SomePlugin, some_output_object

POLICY = PollingPolicy(initial_interval_s=1.0, multiplier=2.0, max_interval_s=300.0, jitter=0.0)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """A fresh fake remote API behind the module-level `api_client` the plugin uses."""
    fresh = FakeApi(checks_needed=4)
    monkeypatch.setattr(some_plugin, "api_client", fresh)
    return fresh


async def test_succeeds_after_several_checks_through_the_engine(api: FakeApi) -> None:
    """New work answers RUNNING with the job id; the engine checks it at growing intervals until
    the remote job completes; the result is the plugin's output object."""
    async with PluginHarness(SomePlugin(), policy=POLICY) as harness:
        result = await harness.run({"data": "https://example.com/talk.wav"})
    assert result.state is SdkTaskState.SUCCEEDED
    assert result.data == some_output_object
    assert result.check_count == 4
    assert api.started == ["https://example.com/talk.wav"]  # request.data.data read the payload
    assert api.looks == {"job-1": 4}
    assert [task.state for task in result.answers] == [SdkTaskState.RUNNING]
    assert result.answers[0].remote_status_input == {"remote_job_id": "job-1"}
    assert [check.outcome for check in result.checks] == [CheckOutcome.RUNNING] * 4 + [
        CheckOutcome.SUCCEEDED
    ]
    assert result.intervals == [1.0, 2.0, 4.0, 8.0]


async def test_steamship_error_fails_the_task_with_message_and_wrapped_error(api: FakeApi) -> None:
    """`raise SteamshipError(message=..., error=exc)` on a status check: the task is FAILED and
    the engine records the message and the wrapped error."""
    async with PluginHarness(SomePlugin(), policy=POLICY) as harness:
        result = await harness.run({"data": "explode"})
    assert result.state is SdkTaskState.FAILED
    error = result.error
    assert error is not None
    assert error.message == "Some error message"
    assert error.error == "RemoteJobError: job-1: GPU out of memory"
    assert error.code == ""  # Steamship's None code is "" here
    assert result.checks[-1].outcome is CheckOutcome.FAILED
    assert result.record.task is not None
    assert result.record.task.status_message == "Some error message"


async def test_cancel_reaches_run_and_the_sdk_answers_cancelled(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    """The cancel request is a status check with cancel_requested set: this run ignores the flag
    and checks the job (answering RUNNING), so the SDK answers CANCELLED with code
    CANCEL_NOT_HANDLED, saying the remote work was not stopped, and logs a warning."""
    api.checks_needed = 10_000
    with caplog.at_level(logging.WARNING, logger="asyncplugin.plugin"):
        async with PluginHarness(SomePlugin(), policy=POLICY) as harness:
            result = await harness.run({"data": "long.wav"}, cancel_after_s=5)
    assert result.state is SdkTaskState.CANCELLED
    cancel = result.checks[-1]
    assert cancel.kind is CallKind.CANCEL
    assert cancel.outcome is CheckOutcome.CANCELLED
    assert "did not stop the remote work" in cancel.message
    # run was called for the cancel request: it looked up the job once more.
    checks_before_cancel = sum(1 for c in result.checks if c.kind is CallKind.CHECK)
    assert api.looks["job-1"] == checks_before_cancel + 1
    warnings = [r.getMessage() for r in caplog.records if CANCEL_NOT_HANDLED in r.getMessage()]
    assert len(warnings) == 1
    assert result.record.task_id in warnings[0]


class MisspeltState:
    """A Steamship-style plugin whose RUNNING answer spells the state wrong."""

    def run(self, request: PluginRequest[dict[str, Any]]) -> Response[dict[str, Any]]:
        return Response(status=Task(state="runing", remote_status_input={"job": "j-1"}))


class StringStates:
    """A Steamship-style plugin answering with string states, in both cases."""

    def run(self, request: PluginRequest[dict[str, Any]]) -> Response[dict[str, Any]]:
        if not request.is_status_check:
            return Response(status=Task(state="running", remote_status_input={"n": 1}))
        n = request.remote_status_input["n"]
        if n < 3:
            return Response(status=Task(state="RUNNING", remote_status_input={"n": n + 1}))
        return Response(data={"checks": n})


async def test_misspelt_string_state_is_invalid_plugin_response_naming_it() -> None:
    """Task(state="runing") fails that answer with INVALID_PLUGIN_RESPONSE naming the value,
    not with a Python conversion error."""
    async with PluginHarness(MisspeltState(), policy=POLICY) as harness:
        result = await harness.run({})
    assert result.state is SdkTaskState.FAILED
    error = result.error
    assert error is not None
    assert error.code == INVALID_PLUGIN_RESPONSE
    assert "'runing' is not a task state" in error.message
    assert error.metadata["rule"] == "STATE_UNKNOWN"
    assert "invalid literal" not in error.message


async def test_string_states_in_either_case_work() -> None:
    """Task(state="running") and Task(state="RUNNING") are RUNNING answers."""
    async with PluginHarness(StringStates(), policy=POLICY) as harness:
        result = await harness.run({})
    assert result.state is SdkTaskState.SUCCEEDED
    assert result.data == {"checks": 3}
    assert result.check_count == 3

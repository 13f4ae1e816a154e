"""The Node.js conformance plugin (node/, a subprocess) against the kit and the Python engine."""

from __future__ import annotations

import pytest

from asyncplugin.conformance.cases import FAST_POLICY, FAST_RETRY, case_named
from asyncplugin.conformance.kit import KitReport, run_kit
from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.engine import CallKind, CheckOutcome, Engine, TaskOptions
from asyncplugin.protocol import TaskState
from tests.conformance.conftest import node_plugin

pytestmark = pytest.mark.usefixtures("node_ready")


def failed(report: KitReport) -> dict[str, str]:
    return {result.case.name: result.detail for result in report.results if not result.passed}


async def test_the_node_plugin_passes_every_case(node_target: str) -> None:
    """The Node plugin, unbroken, passes the whole kit."""
    report = await run_kit(node_target)
    assert failed(report) == {}
    assert report.implementations == ("asyncplugin-node/0.1.0",)


async def test_running_without_remote_status_input_fails_naming_the_rule() -> None:
    """--break running-without-remote-status-input: every case that goes RUNNING fails, and
    the detail names RUNNING_WITHOUT_REMOTE_STATUS_INPUT and plugin.proto."""
    with node_plugin("--break", "running-without-remote-status-input") as target:
        report = await run_kit(target)
    details = failed(report)
    assert set(details) == {
        "async-after-checks",
        "remote-status-input-rotation",
        "echo-verification",
        "progress-and-check-after",
        "failed-on-check",
        "cancel",
        "slow-check",
    }
    for detail in details.values():
        assert detail.startswith("RUNNING_WITHOUT_REMOTE_STATUS_INPUT: status is RUNNING")
        assert "(plugin.proto, Protocol rules)" in detail


async def test_no_echo_fails_naming_the_rotation_and_echo_requirements() -> None:
    """--break no-echo: the token does not rotate and stale echoes are accepted."""
    with node_plugin("--break", "no-echo") as target:
        report = await run_kit(target)
    details = failed(report)
    assert set(details) == {"remote-status-input-rotation", "echo-verification"}
    assert details["remote-status-input-rotation"].startswith("REMOTE_STATUS_INPUT_ROTATION: ")
    assert "ECHO_VERIFICATION: " in details["echo-verification"]
    assert "REMOTE_STATUS_INPUT_NOT_ECHOED" in details["echo-verification"]


async def test_ignore_status_check_fails() -> None:
    """--break ignore-status-check: every scenario that needs status checks never finishes."""
    with node_plugin("--break", "ignore-status-check") as target:
        report = await run_kit(target)
    details = failed(report)
    assert {"async-after-checks", "remote-status-input-rotation", "slow-check"} <= set(details)
    assert "sync-answer" not in details
    assert "is_status_check" in details["async-after-checks"]


async def test_failed_without_error_fails_naming_the_rule() -> None:
    """--break failed-without-error: the two failure cases name FAILED_WITHOUT_ERROR."""
    with node_plugin("--break", "failed-without-error") as target:
        report = await run_kit(target)
    details = failed(report)
    assert set(details) == {"failed-on-initiation", "failed-on-check"}
    for detail in details.values():
        assert detail.startswith("FAILED_WITHOUT_ERROR: ")


async def test_the_python_engine_drives_node_to_succeeded_and_failed(node_target: str) -> None:
    """The reference engine polls the Node plugin to SUCCEEDED (result decoded) and to FAILED
    (the scenario's error envelope recorded exactly)."""
    options = TaskOptions(policy=FAST_POLICY, retry_policy=FAST_RETRY)
    succeed = case_named("async-after-checks").scenario
    fail = case_named("failed-on-check").scenario
    async with Engine(policy=FAST_POLICY, retry_policy=FAST_RETRY) as engine:
        done = await engine.invoke(node_target, payload=succeed, options=options, timeout_s=20)
        broken = await engine.invoke(node_target, payload=fail, options=options, timeout_s=20)
        done_checks = await engine.checks(done.task_id)
    assert done.state is TaskState.SUCCEEDED
    assert done.check_count == 3
    result = done.result_as(conformance_pb2.ScenarioResult)
    assert result.scenario == "async-after-checks"
    assert result.check_number == 3
    assert result.task_id == done.task_id
    assert result.idempotency_key == done.idempotency_key
    assert result.implementation == "asyncplugin-node/0.1.0"
    assert [(c.kind, c.outcome) for c in done_checks] == [
        (CallKind.INITIATE, CheckOutcome.RUNNING),
        (CallKind.CHECK, CheckOutcome.RUNNING),
        (CallKind.CHECK, CheckOutcome.RUNNING),
        (CallKind.CHECK, CheckOutcome.SUCCEEDED),
    ]
    assert broken.state is TaskState.FAILED
    assert broken.check_count == 2
    assert broken.error_proto() == fail.fail_with
    envelope = broken.error_envelope
    assert envelope is not None
    assert envelope.code == "REMOTE_JOB_FAILED"
    assert envelope.suggestion == "Retry with a smaller input."


async def test_the_kit_sends_the_bearer_token() -> None:
    """With --token on the plugin, the kit passes only when given the same token."""
    cases = [case_named("sync-answer"), case_named("echo-verification")]
    with node_plugin("--token", "s3cret") as target:
        allowed = await run_kit(target, cases=cases, bearer_token="s3cret")
        refused = await run_kit(target, cases=cases[:1])
    assert failed(allowed) == {}
    assert "UNAUTHENTICATED" in failed(refused)["sync-answer"]

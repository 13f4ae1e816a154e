"""The kit against Python plugins served in-process: the reference passes, broken ones fail."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from asyncplugin.conformance.cases import CASES, case_named
from asyncplugin.conformance.kit import KitReport, run_kit
from asyncplugin.conformance.reference_plugin import ConformancePlugin
from asyncplugin.plugin import AsyncPlugin, PluginServer
from tests.conformance.broken import NoRotation, RunningWithoutStash


@contextlib.asynccontextmanager
async def served(plugin: AsyncPlugin[Any, Any]) -> AsyncIterator[str]:
    """Serves `plugin` with the SDK's PluginServer on 127.0.0.1:0; yields host:port."""
    server = PluginServer(plugin, host="127.0.0.1", port=0)
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.fixture
async def reference_target() -> AsyncIterator[str]:
    """The Python reference conformance plugin on the SDK's PluginServer."""
    async with served(ConformancePlugin()) as target:
        yield target


def by_name(report: KitReport) -> dict[str, str]:
    return {result.case.name: result.detail for result in report.results if not result.passed}


async def test_the_python_reference_plugin_passes_every_case(reference_target: str) -> None:
    """Every case passes against the reference plugin, concurrently, in a few seconds."""
    started = time.monotonic()
    report = await run_kit(reference_target)
    elapsed = time.monotonic() - started
    assert by_name(report) == {}
    assert report.passed
    assert [r.case.name for r in report.results] == [case.name for case in CASES]
    assert report.implementations == ("asyncplugin-python/0.1.0",)
    print(f"kit against the Python reference plugin: {elapsed:.2f} s")


async def test_only_the_chosen_cases_run(reference_target: str) -> None:
    """`cases` selects what runs."""
    report = await run_kit(reference_target, cases=[case_named("sync-answer")])
    assert [r.case.name for r in report.results] == ["sync-answer"]
    assert report.passed


async def test_a_plugin_that_does_not_rotate_fails_rotation_and_echo() -> None:
    """No rotation and no echo verification fail the rotation case and the echo probe."""
    async with served(NoRotation()) as target:
        report = await run_kit(target)
    failed = by_name(report)
    assert set(failed) == {"remote-status-input-rotation", "echo-verification"}
    assert failed["remote-status-input-rotation"].startswith("REMOTE_STATUS_INPUT_ROTATION: ")
    assert "ECHO_VERIFICATION: " in failed["echo-verification"]


async def test_the_sdk_refuses_a_rule_breaking_answer_and_the_kit_names_the_rule() -> None:
    """The Python SDK never sends RUNNING without remote_status_input: it answers FAILED
    INVALID_PLUGIN_RESPONSE naming the rule, and the kit's detail carries that name."""
    async with served(RunningWithoutStash()) as target:
        report = await run_kit(target, cases=[case_named("async-after-checks")])
    detail = by_name(report)["async-after-checks"]
    assert detail.startswith("FINAL_STATE: the task ended FAILED (INVALID_PLUGIN_RESPONSE")
    assert "RUNNING_WITHOUT_REMOTE_STATUS_INPUT" in detail


async def test_an_unreachable_target_fails_every_case_quickly() -> None:
    """Nothing listening: every case fails (transport retries run out), none hangs."""
    report = await run_kit("127.0.0.1:1", cases=[case_named("sync-answer")], case_timeout_s=10)
    detail = by_name(report)["sync-answer"]
    assert detail.startswith("FINAL_STATE: the task ended FAILED (UNAVAILABLE: ")
    assert "gave up after 3 transport retries" in detail

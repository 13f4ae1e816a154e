"""The conformance engine judge passes against the daemon: `asyncplugin engine serve` as its own
process drives every engine scenario on the recording reference plugin through EngineService."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncplugin.conformance.cases import ENGINE_SCENARIOS, FAST_POLICY, SLOW_CHECK_TIMEOUT_S
from asyncplugin.conformance.engine_judge import judge_engine
from asyncplugin.conformance.reference_plugin import ReferenceServer
from asyncplugin.service import EngineClient, new_key_line, policy_overrides
from asyncplugin.v1 import task_pb2
from tests.service.daemon_proc import start_daemon_process

FLOOR_S = 0.015
"""Below the fast policy's 0.02 s minimum interval."""


@pytest.mark.timeout(120)
async def test_engine_judge_passes_against_the_daemon(tmp_path: Path) -> None:
    policy = policy_overrides(
        initial_interval_s=FAST_POLICY.initial_interval_s,
        multiplier=FAST_POLICY.multiplier,
        max_interval_s=FAST_POLICY.max_interval_s,
        min_interval_s=FAST_POLICY.min_interval_s,
        jitter=FAST_POLICY.jitter,
        max_checks=FAST_POLICY.max_checks,
        deadline_s=FAST_POLICY.deadline_s,
        check_timeout_s=SLOW_CHECK_TIMEOUT_S,
    )
    keys = tmp_path / "keys"
    keys.write_text(new_key_line("k1") + "\n")
    async with ReferenceServer() as reference:
        # Push completion on: every call also carries the address and a completion token.
        daemon, address = await start_daemon_process(
            tmp_path / "tasks.sqlite3", tmp_path / "daemon.log", "--completion-keys", str(keys)
        )
        try:
            async with EngineClient(address) as client:
                ids = {
                    item.name: (
                        await client.submit(
                            reference.address,
                            payload=item.scenario,
                            policy=policy,
                            labels={"scenario": item.name},
                        )
                    ).task_id
                    for item in ENGINE_SCENARIOS
                }
                async for change in client.watch(ids["engine-cancel"]):
                    if change.task.check_count >= 2:
                        break
                await client.cancel(ids["engine-cancel"])
                states = {
                    name: task_pb2.TaskState.Name((await client.wait(task_id)).state)
                    for name, task_id in ids.items()
                }
        finally:
            await daemon.kill()
        observations = reference.observations
    assert states == {
        "engine-sync": "TASK_STATE_SUCCEEDED",
        "engine-rotating": "TASK_STATE_SUCCEEDED",
        "engine-hint": "TASK_STATE_SUCCEEDED",
        "engine-fail": "TASK_STATE_FAILED",
        "engine-slow": "TASK_STATE_SUCCEEDED",
        "engine-cancel": "TASK_STATE_CANCELLED",
    }
    verdict = judge_engine(observations, min_interval_s=FLOOR_S)
    assert verdict.failures == ()
    assert verdict.notes == ()
    assert verdict.passed
    assert verdict.tasks == len(ENGINE_SCENARIOS)

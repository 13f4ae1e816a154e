"""The reverse direction: the engine judge passes our engine and fails broken engines by rule."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from asyncplugin.conformance.cases import ALL_SCENARIOS, ENGINE_SCENARIOS, FAST_POLICY, FAST_RETRY
from asyncplugin.conformance.engine_judge import ENGINE_RULES, EngineVerdict, judge_engine
from asyncplugin.conformance.interpreter import expected_token
from asyncplugin.conformance.observations import (
    ObservationLog,
    observation_to_json,
    read_observations,
)
from asyncplugin.conformance.reference_plugin import ReferenceServer
from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.engine import CallKind, CheckOutcome, Engine
from asyncplugin.protocol import GENERIC_METHOD, TaskState
from asyncplugin.v1 import plugin_pb2, task_pb2

Observation = conformance_pb2.Observation
FLOOR_S = 0.015
"""Below the fast policy's 0.02 s minimum interval."""


def rules(verdict: EngineVerdict) -> list[str]:
    return [failure.name for failure in verdict.failures]


async def drive_reference_engine(target: str) -> dict[str, str]:
    """What an engine operator does: submit every engine scenario, cancel engine-cancel after
    two status checks, wait for every task. Returns the task ids by scenario name."""
    # Below engine-slow's 1 s delay, so that check times out and is retried with its number; far
    # above an answer given at once even on a loaded machine: the judge rightly fails a repeat of
    # a check the plugin answered at once (0.3 s was once exceeded at load average 17).
    policy = dataclasses.replace(FAST_POLICY, check_timeout_s=0.7)
    async with Engine(policy=policy, retry_policy=FAST_RETRY) as engine:
        ids = {
            item.name: await engine.submit(target, payload=item.scenario)
            for item in ENGINE_SCENARIOS
        }
        async for update in engine.watch(ids["engine-cancel"]):
            running = [c for c in update.checks if c.outcome is CheckOutcome.RUNNING]
            if running and running[-1].kind is CallKind.CHECK and running[-1].check_number >= 2:
                break
        await engine.cancel(ids["engine-cancel"])
        for task_id in ids.values():
            await engine.wait(task_id, timeout_s=20)
        states = {name: (await engine.get(task_id)).state for name, task_id in ids.items()}
    assert states == {
        "engine-sync": TaskState.SUCCEEDED,
        "engine-rotating": TaskState.SUCCEEDED,
        "engine-hint": TaskState.SUCCEEDED,
        "engine-fail": TaskState.FAILED,
        "engine-slow": TaskState.SUCCEEDED,
        "engine-cancel": TaskState.CANCELLED,
    }
    return ids


@pytest.fixture
async def reference() -> AsyncIterator[ReferenceServer]:
    """The recording reference plugin on 127.0.0.1:0."""
    async with ReferenceServer() as server:
        yield server


async def test_our_engine_passes(reference: ReferenceServer, tmp_path: Any) -> None:
    """The reference engine breaks no rule, retries keep their number, and the JSON lines round
    trip."""
    ids = await drive_reference_engine(reference.address)
    observations = reference.observations
    verdict = judge_engine(observations, min_interval_s=FLOOR_S)
    assert verdict.failures == ()
    assert verdict.notes == ()
    assert verdict.passed
    assert verdict.tasks == len(ENGINE_SCENARIOS)
    slow = [o.check_number for o in observations if o.task_id == ids["engine-slow"]]
    assert slow == [0, 1, 1, 2]  # check 1 timed out and was retried with its number
    cancel = [o for o in observations if o.task_id == ids["engine-cancel"]]
    assert [o.cancel_requested for o in cancel][-1] is True
    path = tmp_path / "observations.jsonl"
    with ObservationLog(path) as log:
        for observation in observations:
            log.record(observation)
    lines = path.read_text().splitlines()
    assert read_observations(lines) == observations


class FakeEngine:
    """A tiny hand-written engine client, for breaking rules on purpose."""

    def __init__(self, channel: grpc.aio.Channel, scenario: str) -> None:
        self._call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            GENERIC_METHOD
        )
        self.scenario = ALL_SCENARIOS[scenario]
        self.task_id = f"fake-{scenario}"
        self.key = f"key-{scenario}"
        self.last: task_pb2.Task | None = None

    async def send(
        self,
        number: int,
        *,
        status_check: bool | None = None,
        cancel: bool = False,
        echo: struct_pb2.Struct | None = None,
        key: str | None = None,
        bare: bool = False,
    ) -> plugin_pb2.InvokeResponse | None:
        """Sends call `number`, echoing the last RUNNING answer unless `echo` is given."""
        request = plugin_pb2.InvokeRequest(
            data=self.scenario.SerializeToString(),
            context=plugin_pb2.RequestContext(
                task_id=self.task_id, idempotency_key=key or self.key, check_number=number
            ),
            is_status_check=number > 0 if status_check is None else status_check,
            cancel_requested=cancel,
        )
        if number > 0 and not bare:
            request.status.CopyFrom(self.last or task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING))
            if echo is not None:
                request.status.remote_status_input.CopyFrom(echo)
        try:
            raw = await self._call(request.SerializeToString(), timeout=5)
        except grpc.aio.AioRpcError:
            return None  # the plugin SDK refused the request
        answer = plugin_pb2.InvokeResponse.FromString(raw)
        if answer.status.state == task_pb2.TASK_STATE_RUNNING:
            self.last = answer.status
        return answer


def _stash(scenario: str, token: str) -> struct_pb2.Struct:
    stash = struct_pb2.Struct()
    stash.update({"scenario": scenario, "token": token})
    return stash


async def _no_echo(engine: FakeEngine) -> None:
    await engine.send(0)
    await engine.send(1)
    await engine.send(2, echo=_stash("engine-rotating", expected_token(engine.task_id, 0)))


async def _repeat(engine: FakeEngine) -> None:
    await engine.send(0)
    await engine.send(1)
    await engine.send(1, echo=_stash("engine-rotating", expected_token(engine.task_id, 0)))


async def _initiate_again(engine: FakeEngine) -> None:
    await engine.send(0)
    await engine.send(1, status_check=False)


async def _without_status(engine: FakeEngine) -> None:
    await engine.send(0)
    await engine.send(1, bare=True)


async def _new_key(engine: FakeEngine) -> None:
    await engine.send(0)
    await engine.send(1, key="another-key")


async def _after_finish(engine: FakeEngine) -> None:
    await engine.send(0)
    stash = struct_pb2.Struct()
    stash.update({"scenario": "engine-sync"})
    await engine.send(1, echo=stash)


async def _double_cancel(engine: FakeEngine) -> None:
    await engine.send(0)
    await engine.send(1)
    await engine.send(2, cancel=True)
    await engine.send(3, cancel=True)


async def _busy_loop(engine: FakeEngine) -> None:
    for number in range(4):
        await engine.send(number)


Script = Callable[[FakeEngine], Awaitable[None]]


@pytest.mark.parametrize(
    ("scenario", "script", "rule"),
    [
        ("engine-rotating", _no_echo, "REMOTE_STATUS_INPUT_NOT_ECHOED"),
        ("engine-rotating", _repeat, "CHECK_NUMBER_NOT_SEQUENTIAL"),
        ("engine-rotating", _initiate_again, "CHECK_NUMBER_MISMATCH"),
        ("engine-rotating", _without_status, "STATUS_CHECK_WITHOUT_STATUS"),
        ("engine-rotating", _new_key, "IDEMPOTENCY_KEY_CHANGED"),
        ("engine-sync", _after_finish, "CALL_AFTER_FINISH"),
        ("engine-cancel", _double_cancel, "CANCEL_REPEATED"),
        ("engine-rotating", _busy_loop, "INTERVAL_BELOW_FLOOR"),
    ],
    ids=lambda value: value if isinstance(value, str) else value.__name__.strip("_"),
)
async def test_a_broken_engine_fails_naming_the_rule(
    reference: ReferenceServer, scenario: str, script: Script, rule: str
) -> None:
    """Each deliberately broken client fails exactly the rule it breaks."""
    async with grpc.aio.insecure_channel(reference.address) as channel:
        await script(FakeEngine(channel, scenario))
    # The fake engine calls back to back: the floor is judged only where it is the point.
    floor_s = 0.05 if rule == "INTERVAL_BELOW_FLOOR" else 0.0
    verdict = judge_engine(reference.observations, min_interval_s=floor_s)
    assert rules(verdict) == [rule]
    assert f"task fake-{scenario} ({scenario})" in verdict.failures[0].message
    assert not verdict.passed


def obs(
    number: int,
    at: float,
    *,
    task: str = "t",
    scenario: str = "engine-rotating",
    key: str = "k",
    cancel: bool = False,
    deadline_s: int | None = None,
) -> Observation:
    """A synthetic observation of the reference plugin answering `scenario` correctly."""
    observation = Observation(
        task_id=task,
        check_number=number,
        is_status_check=number > 0,
        cancel_requested=cancel,
        idempotency_key=key,
        scenario=scenario,
    )
    if number > 0:
        stash: dict[str, Any] = {"scenario": scenario}
        if ALL_SCENARIOS.get(scenario, conformance_pb2.Scenario()).rotate_remote_status_input:
            stash["token"] = expected_token(task, number - 1)
        observation.remote_status_input.update(stash)
    observation.receive_time.FromNanoseconds(round((1_000 + at) * 1e9))
    if deadline_s is not None:
        observation.deadline.FromSeconds(deadline_s)
    return observation


def test_growing_intervals_pass_and_a_shrinking_one_fails() -> None:
    """Intervals may jitter but not fall below half the median before them."""
    times = [0.0, 0.1, 0.3, 0.7, 1.5]
    good = [obs(n, t) for n, t in enumerate(times)]
    assert judge_engine(good).failures == ()
    shrunk = [obs(n, t) for n, t in enumerate([0.0, 0.4, 0.8, 1.2, 1.3])]
    assert rules(judge_engine(shrunk)) == ["INTERVAL_SHRANK"]


def test_a_hint_lets_intervals_shrink() -> None:
    """With a check_after hint, shorter intervals are the plugin's choice."""
    calls = [obs(n, t, scenario="engine-hint") for n, t in enumerate([0.0, 0.4, 0.8, 0.9])]
    assert judge_engine(calls).failures == ()


def test_a_delayed_check_may_be_retried_but_not_skipped() -> None:
    """engine-slow delays check 1 by 1 s: a repeat of 1 is a retry; check 2 before the delayed
    answer means the engine moved on without retrying."""
    retried = [obs(n, t, scenario="engine-slow") for n, t in [(0, 0), (1, 0.1), (1, 0.5), (2, 0.6)]]
    assert judge_engine(retried).failures == ()
    skipped = [obs(n, t, scenario="engine-slow") for n, t in [(0, 0), (1, 0.1), (2, 0.5)]]
    assert rules(judge_engine(skipped)) == ["CHECK_NUMBER_NOT_SEQUENTIAL"]


def test_identities_and_deadline_stay_constant() -> None:
    """A changed deadline, a task id that changes mid-task, a key shared by two tasks."""
    deadline = [obs(0, 0, deadline_s=10), obs(1, 0.1, deadline_s=20)]
    assert rules(judge_engine(deadline)) == ["DEADLINE_CHANGED"]
    moved = [obs(0, 0, task="a"), obs(1, 0.1, task="b")]
    assert "TASK_ID_CHANGED" in rules(judge_engine(moved))
    shared = [
        obs(0, 0, task="a", scenario="engine-sync"),
        obs(0, 0.1, task="b", scenario="engine-sync"),
    ]
    assert rules(judge_engine(shared)) == ["IDEMPOTENCY_KEY_REUSED"]


def test_unknown_scenarios_are_judged_in_part_with_a_note() -> None:
    """Scenario-free rules still apply; the note says what was skipped."""
    calls = [obs(0, 0, scenario="mine"), obs(2, 0.1, scenario="mine")]
    verdict = judge_engine(calls)
    assert rules(verdict) == ["CHECK_NUMBER_NOT_SEQUENTIAL"]
    assert "mine" in verdict.notes[0]


def test_nothing_observed_does_not_pass() -> None:
    """An empty file is not a pass."""
    verdict = judge_engine([])
    assert not verdict.passed
    assert verdict.notes


def test_every_rule_is_documented() -> None:
    """Every rule name the judge can produce is in ENGINE_RULES with a citation."""
    names = {rule.name for rule in ENGINE_RULES}
    assert len(names) == len(ENGINE_RULES)
    assert all(rule.citation and rule.requirement for rule in ENGINE_RULES)
    assert observation_to_json(obs(1, 0)).startswith("{")

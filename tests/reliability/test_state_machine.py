"""Property tests of the engine's task state machine, driven by hypothesis-chosen answers.

The engine runs on a FakeClock against a scripted in-memory Transport: for each task,
hypothesis draws the sequence of what the plugin does on each call (RUNNING with or without a
hint, SUCCEEDED, FAILED, a protocol violation, garbage, UNAVAILABLE, a call timeout, a
non-retryable gRPC error), optionally a cancel arriving during its k-th call, and the polling
and retry policies. Whatever the draw, these must hold:

  - no state leaves a terminal state, and RUNNING never goes back to WAITING;
  - answered calls have strictly increasing check numbers; a transport retry keeps its number;
    no initiation follows a RUNNING answer; after the end only one cancel request is sent;
  - every interval lies within the policy's bounds (polling or retry), unless cut to the
    deadline, and every call is sent exactly at the time recorded for it;
  - the task ends as a model of the rules says (SUCCEEDED, the plugin's FAILED, PROTOCOL_VIOLATION,
    UNAVAILABLE / CHECK_TIMEOUT after max_retries, PERMISSION_DENIED, MAX_CHECKS_EXCEEDED), or
    DEADLINE_EXCEEDED no earlier than its deadline, or CANCELLED if the cancel came first.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from asyncplugin.engine import (
    CallKind,
    CheckOutcome,
    CheckRecord,
    Engine,
    FakeClock,
    MemoryStore,
    PollingPolicy,
    TaskRecord,
    TaskUpdate,
    TransportRetryPolicy,
)
from asyncplugin.engine.transport import Metadata, classify_rpc_error
from asyncplugin.protocol import TaskState, decode_payload, dict_to_struct
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2
from tests.reliability.invariants import history_problems
from tests.reliability.sizes import TIMEOUT_S, examples

EVENTS = ("run", "hint", "ok", "fail", "bad", "cancelled", "unavailable", "timeout", "denied")
_WEIGHTED = st.sampled_from(("run",) * 8 + ("hint",) * 3 + ("unavailable", "timeout") * 2 + EVENTS)


@dataclass
class Script:
    """What the plugin does for one task: one event per call, then RUNNING forever."""

    events: list[str]
    hints: list[float]
    cancel_at: int | None
    calls: list[plugin_pb2.InvokeRequest] = field(default_factory=list)
    task_id: str = ""


class ScriptedTransport:
    """A Transport answering each task's calls from its script (no network, no time)."""

    def __init__(self, scripts: Sequence[Script]) -> None:
        self.scripts = scripts
        self.engine: Engine | None = None
        self.cancels: list[asyncio.Task[TaskRecord]] = []

    async def call(
        self,
        target: str,
        method: str,
        request: bytes,
        *,
        timeout_s: float,
        metadata: Metadata = (),
    ) -> bytes:
        message = plugin_pb2.InvokeRequest.FromString(request)
        script = self.scripts[int(decode_payload(message.data, dict)["i"])]
        if message.cancel_requested:
            script.calls.append(message)
            return _answer(task_pb2.Task(state=task_pb2.TASK_STATE_CANCELLED))
        index = len([c for c in script.calls if not c.cancel_requested])
        script.calls.append(message)
        if index == script.cancel_at and self.engine is not None:
            loop = asyncio.get_running_loop()
            self.cancels.append(loop.create_task(self.engine.cancel(message.context.task_id)))
        event = script.events[index] if index < len(script.events) else "run"
        codes = {
            "unavailable": grpc.StatusCode.UNAVAILABLE,
            "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
            "denied": grpc.StatusCode.PERMISSION_DENIED,
        }
        if event in codes:
            raise classify_rpc_error(
                codes[event], event, [], target=target, method=method, timeout_s=timeout_s
            )
        if event == "ok":
            return plugin_pb2.InvokeResponse(data=b"result").SerializeToString()
        if event == "fail":
            error = error_pb2.Error(message="remote job failed", code="REMOTE_FAILED")
            return _answer(task_pb2.Task(state=task_pb2.TASK_STATE_FAILED, error=error))
        if event == "bad":
            return b"\xff\xff\xff\xff"
        if event == "cancelled":
            return _answer(task_pb2.Task(state=task_pb2.TASK_STATE_CANCELLED))
        task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING)
        task.remote_status_input.CopyFrom(dict_to_struct({"call": index}))
        if event == "hint":
            task.check_after.FromNanoseconds(round(script.hints[index % len(script.hints)] * 1e9))
        return _answer(task)

    async def close(self) -> None:
        """Nothing to release."""


def _answer(task: task_pb2.Task) -> bytes:
    return plugin_pb2.InvokeResponse(status=task).SerializeToString()


@dataclass(frozen=True)
class Ending:
    """How the model says a task ends, and at which call (its index in the script)."""

    state: TaskState
    code: str
    at_call: int


def model(events: list[str], policy: PollingPolicy, retry: TransportRetryPolicy) -> Ending:
    """The rules of the engine's loop, as plain arithmetic over the script (no deadline)."""
    number, retries, index = 0, 0, 0
    assert policy.max_checks is not None
    while True:
        event = events[index] if index < len(events) else "run"
        if event in ("unavailable", "timeout"):
            if retries < retry.max_retries:
                retries, index = retries + 1, index + 1
                continue
            code = "UNAVAILABLE" if event == "unavailable" else "CHECK_TIMEOUT"
            return Ending(TaskState.FAILED, code, index)
        retries = 0
        ends = {
            "denied": Ending(TaskState.FAILED, "PERMISSION_DENIED", index),
            "ok": Ending(TaskState.SUCCEEDED, "", index),
            "fail": Ending(TaskState.FAILED, "REMOTE_FAILED", index),
            "bad": Ending(TaskState.FAILED, "PROTOCOL_VIOLATION", index),
            "cancelled": Ending(TaskState.FAILED, "PROTOCOL_VIOLATION", index),
        }
        if event in ends:
            return ends[event]
        if number >= policy.max_checks:  # RUNNING after the last allowed check
            return Ending(TaskState.FAILED, "MAX_CHECKS_EXCEEDED", index)
        number, index = number + 1, index + 1


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PollingPolicy, TransportRetryPolicy, list[Script]]:
    """A polling policy, a retry policy, and one to four scripted tasks."""
    min_s = draw(st.floats(0.01, 5.0))
    initial = draw(st.floats(min_s, 10.0))
    policy = PollingPolicy(
        initial_interval_s=initial,
        min_interval_s=min_s,
        max_interval_s=draw(st.floats(initial, 600.0)),
        multiplier=draw(st.floats(1.0, 3.0)),
        jitter=draw(st.floats(0.0, 0.9)),
        max_checks=draw(st.integers(1, 15)),
        deadline_s=draw(st.one_of(st.none(), st.floats(0.5, 300.0))),
    )
    min_backoff = draw(st.floats(0.01, 2.0))
    backoff = draw(st.floats(min_backoff, 5.0))
    retry = TransportRetryPolicy(
        initial_backoff_s=backoff,
        min_backoff_s=min_backoff,
        max_backoff_s=draw(st.floats(backoff, 60.0)),
        multiplier=draw(st.floats(1.0, 3.0)),
        jitter=draw(st.floats(0.0, 0.9)),
        max_retries=draw(st.integers(0, 4)),
    )
    scripts = [
        Script(
            events=draw(st.lists(_WEIGHTED, min_size=1, max_size=25)),
            hints=draw(st.lists(st.floats(0.0, 10_000.0), min_size=1, max_size=3)),
            cancel_at=draw(st.one_of(st.none(), st.integers(0, 20))),
        )
        for _ in range(draw(st.integers(1, 4)))
    ]
    return policy, retry, scripts


async def _run(
    policy: PollingPolicy, retry: TransportRetryPolicy, scripts: list[Script], seed: int
) -> tuple[dict[str, list[TaskRecord]], dict[str, TaskRecord], dict[str, list[CheckRecord]]]:
    updates: dict[str, list[TaskRecord]] = defaultdict(list)

    def on_change(update: TaskUpdate) -> None:
        updates[update.record.task_id].append(update.record)

    transport = ScriptedTransport(scripts)
    engine = Engine(
        store=MemoryStore(),
        clock=FakeClock(),
        policy=policy,
        retry_policy=retry,
        transport=transport,
        rng=random.Random(seed),
        on_change=on_change,
        shutdown_grace_s=0.0,
    )
    transport.engine = engine
    async with engine:
        for index, script in enumerate(scripts):
            script.task_id = await engine.submit("plugin:1", payload={"i": index})
        async with asyncio.timeout(30):
            finals = {s.task_id: await engine.wait(s.task_id) for s in scripts}
            await asyncio.gather(*transport.cancels)
            finals = {s.task_id: await engine.get(s.task_id) for s in scripts}
        histories = {s.task_id: list(await engine.checks(s.task_id)) for s in scripts}
    return updates, finals, histories


_ALLOWED = {
    TaskState.WAITING: set(TaskState),  # a transport retry stays WAITING; or RUNNING, or an end
    TaskState.RUNNING: set(TaskState) - {TaskState.WAITING},
}
"""The states a record may move to from each unfinished state (a terminal one stays put)."""


@pytest.mark.timeout(TIMEOUT_S)
@examples(quick=300, long=5_000)
@given(scenario=scenarios(), seed=st.integers(0, 2**32))
def test_task_state_machine_invariants(
    scenario: tuple[PollingPolicy, TransportRetryPolicy, list[Script]], seed: int
) -> None:
    """Whatever the plugin does, the recorded states, check numbers, intervals and endings
    obey the rules (see the module docstring)."""
    policy, retry, scripts = scenario
    updates, finals, histories = asyncio.run(_run(policy, retry, scripts, seed))
    for script in scripts:
        task_id = script.task_id
        _check_task(script, policy, retry, updates[task_id], finals[task_id], histories[task_id])
        _check_history(histories[script.task_id], policy, retry)


def _check_task(
    script: Script,
    policy: PollingPolicy,
    retry: TransportRetryPolicy,
    updates: list[TaskRecord],
    final: TaskRecord,
    history: list[CheckRecord],
) -> None:
    states = [record.state for record in updates]
    for before, after in itertools.pairwise(states):
        if before.is_terminal:
            assert after is before, f"left terminal {before.name} for {after.name}"
        assert after in _ALLOWED.get(before, {before}), (before, after)
    assert final.is_terminal
    assert final == updates[-1]
    calls = [c for c in script.calls if not c.cancel_requested]
    cancels = [c for c in script.calls if c.cancel_requested]
    assert len(cancels) <= 1
    numbers = [c.context.check_number for c in calls]
    assert numbers == sorted(numbers), numbers
    seen_running = False
    for call, what in zip(calls, script.events + ["run"] * len(calls), strict=False):
        assert not (seen_running and not call.is_status_check), "initiated after RUNNING"
        seen_running = seen_running or what in ("run", "hint")
    ending = model(script.events, policy, retry)
    cancelled_first = script.cancel_at is not None and script.cancel_at < min(
        ending.at_call + 1, len(calls)
    )
    code = final.error_proto().code if final.error is not None else ""
    got = (final.state, code)
    event(f"{final.state.name} {code}".strip())
    if cancelled_first and final.state is TaskState.CANCELLED:
        return
    if final.deadline is not None and got == (TaskState.FAILED, "DEADLINE_EXCEEDED"):
        assert final.end_time is not None
        assert final.end_time >= final.deadline
        assert all(
            e.started_time <= final.deadline
            for e in history
            if e.kind in (CallKind.INITIATE, CallKind.CHECK)
        ), "a call was sent after the deadline"
        return
    assert got == (ending.state, ending.code), (script.events, script.cancel_at, numbers)
    assert len(calls) == ending.at_call + 1


def _check_history(
    history: list[CheckRecord], policy: PollingPolicy, retry: TransportRetryPolicy
) -> None:
    entries = [e for e in history if e.kind is not CallKind.CANCEL]
    assert history_problems(entries) == []
    eps = 1e-9
    for entry, after in zip(entries, [*entries[1:], None], strict=False):
        interval = entry.interval_s
        if interval is None:
            continue
        cut = "cut to the deadline" in entry.reason
        if entry.outcome is CheckOutcome.TRANSPORT_RETRY:
            low, high = retry.min_backoff_s, retry.max_backoff_s
        else:
            low, high = policy.min_interval_s, policy.max_interval_s
        assert interval <= high + eps, entry
        assert cut or interval >= low - eps, entry
        due = entry.next_check_time
        assert due is not None
        assert abs(due - (entry.finished_time + interval)) < 1e-6
        if after is not None and after.kind is not CallKind.GIVE_UP:
            assert after.started_time == due, (entry, after)

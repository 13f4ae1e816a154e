"""Judging an ENGINE from what the reference conformance plugin observed it send.

Pure: a list of Observations in (one per call, as `ReferenceServer` records them), named
failures out. The reference plugin is deterministic, so for every published scenario
(`cases.ALL_SCENARIOS`) the judge recomputes what the plugin answered to each call with the
reference interpreter, and can tell whether the engine echoed it, and whether it kept calling after
the work was done. For scenarios it does not know, it judges what needs no answer (numbers,
identities, cancel, intervals) and says so in a note.

The rules, per task (calls grouped by task_id, in order of receipt):
  - check_number is 0 on the first call, then grows by exactly 1; it repeats only for a transport
    retry, which the plugin sees only after answering too slowly (a delayed check);
  - is_status_check is false only on check 0 (protocol rule CHECK_NUMBER_MISMATCH); a status check
    carries remote_status_input (STATUS_CHECK_WITHOUT_STATUS), exactly as last answered;
  - task_id, idempotency_key, deadline and payload are the same on every call; a key names one task;
  - cancel_requested is sent at most once, only on a status check, and is the last call;
  - no call follows an answer that finished the task (data or FAILED);
  - status checks are never closer than a floor, and intervals do not shrink below a fraction of
    the median one before (without a check_after hint; jitter is allowed for).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from asyncplugin.conformance.interpreter import delay_for, interpret
from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.protocol import request_violations
from asyncplugin.v1 import plugin_pb2, task_pb2

from .cases import ALL_SCENARIOS
from .engine_rules import ENGINE_CITATIONS, ENGINE_RULES, EngineRule, EngineVerdict
from .engine_rules import engine_failure as _failure
from .findings import Failure, FailureLog, to_json
from .observations import receive_seconds, request_from_observation

__all__ = [
    "DEFAULT_MIN_INTERVAL_S",
    "DEFAULT_SHRINK_FACTOR",
    "ENGINE_RULES",
    "EngineRule",
    "EngineVerdict",
    "judge_engine",
]

Observation = conformance_pb2.Observation


DEFAULT_MIN_INTERVAL_S: Final = 0.01
"""The floor between two status checks of one task: closer than this is a busy loop."""


DEFAULT_SHRINK_FACTOR: Final = 0.5
"""An interval may shrink (jitter) to this fraction of the median interval before it."""


@dataclass(slots=True)
class _Task:
    """One task's calls, and what the reference plugin answered to each."""

    task_id: str
    calls: list[Observation]
    scenario: conformance_pb2.Scenario | None
    requests: list[plugin_pb2.InvokeRequest] = field(default_factory=list)
    answers: list[plugin_pb2.InvokeResponse | None] = field(default_factory=list)

    @property
    def name(self) -> str:
        scenario = self.calls[0].scenario or "?"
        return f"task {self.task_id or '(no id)'} ({scenario})"

    def delayed(self, index: int) -> bool:
        """True when the plugin delayed its answer to call `index` (a retry may follow)."""
        return self.delay_s(index) > 0

    def delay_s(self, index: int) -> float:
        """How long the plugin waited before answering call `index`.

        Only the first call of a number is delayed: a later one is a transport retry, which the
        plugin answers at once (it carries status.retries > 0, which observations do not show).
        """
        if self.scenario is None:
            return 0.0
        number = self.calls[index].check_number
        if any(call.check_number == number for call in self.calls[:index]):
            return 0.0
        return delay_for(self.scenario, self.requests[index])


def judge_engine(
    observations: Iterable[Observation],
    *,
    scenarios: Mapping[str, conformance_pb2.Scenario] = ALL_SCENARIOS,
    min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
    shrink_factor: float = DEFAULT_SHRINK_FACTOR,
) -> EngineVerdict:
    """Judges an engine from the calls the reference conformance plugin received.

    Args:
        observations: every call received, as recorded (any order; sorted by receive time).
        scenarios: the scenarios by name, to recompute the plugin's answers.
        min_interval_s: the floor between two status checks of one task.
        shrink_factor: how far an interval may fall below the median of those before it.
    """
    calls = sorted(observations, key=receive_seconds)
    found = FailureLog(citations=ENGINE_CITATIONS)
    notes: list[str] = []
    by_task: dict[str, list[Observation]] = {}
    for observation in calls:
        by_task.setdefault(observation.task_id, []).append(observation)
    found.extend(_identities(by_task))
    unknown: set[str] = set()
    for task_id, task_calls in by_task.items():
        name = task_calls[0].scenario
        scenario = scenarios.get(name)
        if scenario is None:
            unknown.add(name or "(none)")
        task = _prepare(task_id, task_calls, scenario)
        found.extend(_request_rules(task))
        found.extend(_constants(task))
        found.extend(_sequence(task))
        found.extend(_cancel(task))
        found.extend(_finish_and_echo(task))
        found.extend(_intervals(task, min_interval_s, shrink_factor))
    if unknown:
        notes.append(
            f"scenarios not in the catalogue: {', '.join(sorted(unknown))}: the echo, the end of "
            "the conversation, retries and intervals were judged only in part (submit the "
            "scenarios of 'asyncplugin conformance scenarios')"
        )
    if not calls:
        notes.append("no calls were observed: point the engine at the reference plugin first")
    return EngineVerdict(
        failures=tuple(found.result()), notes=tuple(notes), tasks=len(by_task), calls=len(calls)
    )


def _prepare(
    task_id: str, calls: list[Observation], scenario: conformance_pb2.Scenario | None
) -> _Task:
    task = _Task(task_id=task_id, calls=calls, scenario=scenario)
    for observation in calls:
        request = request_from_observation(observation, scenario)
        task.requests.append(request)
        valid = not request_violations(request)
        answer = interpret(scenario, request) if scenario is not None and valid else None
        task.answers.append(answer)
    return task


def _label(observation: Observation) -> str:
    if observation.cancel_requested:
        return f"the cancel request (check {observation.check_number})"
    if observation.is_status_check:
        return f"check {observation.check_number}"
    return f"the initiating call (check {observation.check_number})"


def _identities(by_task: Mapping[str, Sequence[Observation]]) -> Iterable[Failure]:
    """A key names one task; a task id is never empty."""
    tasks_by_key: dict[str, list[str]] = {}
    for task_id, calls in by_task.items():
        if not task_id:
            yield _failure("TASK_ID_CHANGED", f"{len(calls)} calls carry no task_id")
        for key in dict.fromkeys(call.idempotency_key for call in calls):
            if key:
                tasks_by_key.setdefault(key, []).append(task_id)
    for key, task_ids in tasks_by_key.items():
        if len(task_ids) < 2:
            continue
        continued = [tid for tid in task_ids if by_task[tid][0].check_number != 0]
        if continued:
            yield _failure(
                "TASK_ID_CHANGED",
                f"idempotency key {key!r} came with task ids {', '.join(task_ids)}: the calls "
                f"of one task changed task_id (task {continued[0]} starts at check "
                f"{by_task[continued[0]][0].check_number})",
            )
        else:
            yield _failure(
                "IDEMPOTENCY_KEY_REUSED",
                f"idempotency key {key!r} was sent for {len(task_ids)} tasks: "
                f"{', '.join(task_ids)}",
            )


def _request_rules(task: _Task) -> Iterable[Failure]:
    """The protocol rules on requests (CHECK_NUMBER_MISMATCH, STATUS_CHECK_WITHOUT_STATUS)."""
    for observation, request in zip(task.calls, task.requests, strict=True):
        for violation in request_violations(request):
            yield Failure(
                name=violation.rule,
                message=f"{task.name}: {violation.detail} (is_status_check "
                f"{str(observation.is_status_check).lower()}, check_number "
                f"{observation.check_number})",
                citation="plugin.proto, Protocol rules",
            )


def _constants(task: _Task) -> Iterable[Failure]:
    keys = list(dict.fromkeys(call.idempotency_key for call in task.calls))
    if len(keys) > 1 or keys == [""]:
        shown = ", ".join(repr(key) for key in keys)
        yield _failure("IDEMPOTENCY_KEY_CHANGED", f"{task.name} was called with keys {shown}")
    deadlines = list(
        dict.fromkeys(
            call.deadline.ToJsonString() if call.HasField("deadline") else "unset"
            for call in task.calls
        )
    )
    if len(deadlines) > 1:
        yield _failure(
            "DEADLINE_CHANGED", f"{task.name} was called with deadlines {', '.join(deadlines)}"
        )
    names = list(dict.fromkeys(call.scenario for call in task.calls))
    if len(names) > 1:
        shown = ", ".join(repr(name) for name in names)
        yield _failure("PAYLOAD_CHANGED", f"{task.name} was called with scenarios {shown}")


def _sequence(task: _Task) -> Iterable[Failure]:
    """0, 1, 2...; a repeat only after a delayed call; never ahead of a delayed answer."""
    calls = task.calls
    first = calls[0]
    if first.check_number != 0:
        yield _failure(
            "CHECK_NUMBER_NOT_SEQUENTIAL",
            f"{task.name}: the first call has check_number {first.check_number}; expected 0",
        )
    for index in range(1, len(calls)):
        previous, current = calls[index - 1], calls[index]
        before, now = previous.check_number, current.check_number
        if now == before:
            if task.scenario is not None and not task.delayed(index - 1):
                yield _failure(
                    "CHECK_NUMBER_NOT_SEQUENTIAL",
                    f"{task.name}: check {now} was sent again, but the plugin had answered it "
                    "at once (only a transport retry keeps the number)",
                )
        elif now != before + 1:
            yield _failure(
                "CHECK_NUMBER_NOT_SEQUENTIAL",
                f"{task.name}: {_label(current)} came after check {before}; expected check "
                f"{before + 1}",
            )
        elif task.delayed(index - 1) and not current.cancel_requested:
            answered = receive_seconds(previous) + task.delay_s(index - 1)
            if receive_seconds(current) < answered:
                yield _failure(
                    "CHECK_NUMBER_NOT_SEQUENTIAL",
                    f"{task.name}: check {now} came {answered - receive_seconds(current):.2f} s "
                    f"before the (delayed) answer to check {before}: a check that timed out "
                    "must be retried with its own number",
                )


def _cancel(task: _Task) -> Iterable[Failure]:
    cancels = [index for index, call in enumerate(task.calls) if call.cancel_requested]
    if not cancels:
        return
    if len(cancels) > 1:
        yield _failure(
            "CANCEL_REPEATED", f"{task.name} got {len(cancels)} calls with cancel_requested"
        )
    for index in cancels:
        if not task.calls[index].is_status_check:
            yield _failure(
                "CANCEL_WITHOUT_STATUS_CHECK",
                f"{task.name}: cancel_requested came with is_status_check false "
                f"(check {task.calls[index].check_number})",
            )
    after = [call for call in task.calls[cancels[0] + 1 :] if not call.cancel_requested]
    if after:
        yield _failure(
            "CALL_AFTER_CANCEL",
            f"{task.name}: {_label(after[0])} came after the cancel request",
        )


def _finishes(answer: plugin_pb2.InvokeResponse | None) -> bool:
    return answer is not None and (
        answer.HasField("data") or answer.status.state == task_pb2.TASK_STATE_FAILED
    )


def _running_stash(answer: plugin_pb2.InvokeResponse | None) -> task_pb2.Task | None:
    if answer is None or answer.HasField("data"):
        return None
    if answer.status.state != task_pb2.TASK_STATE_RUNNING:
        return None
    return answer.status


def _finish_and_echo(task: _Task) -> Iterable[Failure]:
    """Each status check echoes the answer to the check before it; nothing follows the end."""
    if task.scenario is None:
        return
    answered: dict[int, task_pb2.Task] = {}
    finished: int | None = None
    for index, call in enumerate(task.calls):
        if finished is not None:
            end = task.calls[finished]
            retry = call.check_number == end.check_number and task.delayed(finished)
            if not retry and not call.cancel_requested:
                yield _failure(
                    "CALL_AFTER_FINISH",
                    f"{task.name}: {_label(call)} came after the plugin answered "
                    f"{_label(end)} with {_ending(task.answers[finished])}",
                )
                return
            continue
        number = call.check_number
        if call.is_status_check and call.HasField("remote_status_input"):
            last = answered.get(number - 1)
            if last is not None and last.remote_status_input != call.remote_status_input:
                yield _failure(
                    "REMOTE_STATUS_INPUT_NOT_ECHOED",
                    f"{task.name}: {_label(call)} echoed remote_status_input "
                    f"{to_json(call.remote_status_input)}; the plugin's answer to check "
                    f"{number - 1} was {to_json(last.remote_status_input)}",
                )
        stash = _running_stash(task.answers[index])
        if stash is not None and number not in answered:
            answered[number] = stash
        if _finishes(task.answers[index]):
            finished = index


def _ending(answer: plugin_pb2.InvokeResponse | None) -> str:
    if answer is not None and answer.HasField("data"):
        return "data"
    if answer is not None:
        return f"FAILED ({answer.status.error.code})"
    return "an end"


def _intervals(task: _Task, floor_s: float, shrink_factor: float) -> Iterable[Failure]:
    """Status checks never closer than the floor; intervals do not shrink without a hint."""
    calls = task.calls
    hinted = task.scenario is None or task.scenario.HasField("check_after")
    earlier: list[float] = []
    for index in range(1, len(calls)):
        previous, current = calls[index - 1], calls[index]
        if (
            current.cancel_requested
            or current.check_number != previous.check_number + 1
            or task.delayed(index - 1)
        ):
            continue
        interval = receive_seconds(current) - receive_seconds(previous)
        if interval < floor_s:
            yield _failure(
                "INTERVAL_BELOW_FLOOR",
                f"{task.name}: {_label(current)} came {interval * 1000:.1f} ms after check "
                f"{previous.check_number}; the floor is {floor_s * 1000:g} ms",
            )
        if not current.is_status_check or not previous.is_status_check:
            continue
        # The median of the earlier intervals: one stall (a slow scheduler) must not make every
        # later interval look short.
        typical = statistics.median(earlier) if len(earlier) >= 2 else 0.0
        if not hinted and interval < shrink_factor * typical:
            yield _failure(
                "INTERVAL_SHRANK",
                f"{task.name}: the interval before {_label(current)} was {interval:.3f} s, less "
                f"than {shrink_factor:g} x the median interval before it ({typical:.3f} s)",
            )
        earlier.append(interval)

"""Judging a plugin from one driven scenario: pure functions, no I/O, no clock.

Input: the engine's final TaskRecord and check history, and every exchange the engine (or a probe)
had with the plugin: each request sent and the raw answer bytes, or the gRPC error. Output: a list
of named failures, empty when the plugin behaved as the scenario and the protocol require.

What is expected follows from the Scenario (conformance.proto), so one judge serves every case:
every answer obeys the protocol rules (named as in plugin.proto); the task ends SUCCEEDED on
check `checks_before_done`, FAILED with exactly `fail_with` on `fail_on_check`, or CANCELLED on
the cancel request of a `run_until_cancelled` scenario; RUNNING answers carry the scenario name,
the rotated token, the progress formula and the check_after hint; a delayed check that exceeded
the per-check timeout is retried and its retry answered without delay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf import message as pb_message

from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.engine import CallKind, CheckOutcome, CheckRecord, PollingPolicy, TaskRecord
from asyncplugin.engine.errors import ENGINE_DOMAIN, EngineCode
from asyncplugin.protocol import TaskState

from .answers import (
    answer_rule_failures,
    answer_state,
    expected_progress,
    is_running,
    running_answer_failures,
)
from .findings import Exchange, Failure, FailureLog, message_diff
from .requirements import CITATIONS, NOT_ECHOED, PROTOCOL_RULES, RETRIED_CODES
from .requirements import kit_failure as _failure

__all__ = [
    "CITATIONS",
    "NOT_ECHOED",
    "PROTOCOL_RULES",
    "RETRIED_CODES",
    "Driven",
    "answer_rule_failures",
    "answer_state",
    "expected_end",
    "expected_progress",
    "judge_driven",
    "running_answer_failures",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Driven:
    """Everything known about one scenario driven through the engine.

    Attributes:
        scenario: the payload sent.
        policy: the task's polling policy (for its per-check timeout).
        record: the engine's final (or, after a timeout, latest) record of the task.
        checks: the engine's check history, oldest first.
        exchanges: every call to the plugin for this task, oldest first.
        cancel_after_checks: for a cancel case, the RUNNING checks awaited before cancelling.
        timed_out_s: set when the kit gave up waiting after this many seconds.
    """

    scenario: conformance_pb2.Scenario
    policy: PollingPolicy
    record: TaskRecord
    checks: Sequence[CheckRecord] = ()
    exchanges: Sequence[Exchange] = ()
    cancel_after_checks: int = 0
    timed_out_s: float | None = None


def expected_end(scenario: conformance_pb2.Scenario) -> tuple[TaskState, int]:
    """How the scenario ends and on which check number (-1: whenever the engine cancels)."""
    if scenario.HasField("fail_with") and (
        scenario.run_until_cancelled or scenario.fail_on_check <= scenario.checks_before_done
    ):
        return TaskState.FAILED, scenario.fail_on_check
    if scenario.run_until_cancelled:
        return TaskState.CANCELLED, -1
    return TaskState.SUCCEEDED, scenario.checks_before_done


def judge_driven(driven: Driven) -> list[Failure]:
    """Every named failure of the plugin in one driven scenario (empty: it passed)."""
    found = FailureLog(citations=CITATIONS)
    found.extend(answer_rule_failures(driven.exchanges, driven.checks))
    found.extend(_transport_errors(driven))
    if driven.timed_out_s is not None:
        found.add(
            "TIMEOUT",
            f"the task was still {driven.record.state.name} after {driven.timed_out_s:g} s "
            f"({driven.record.check_count} status checks)",
        )
    else:
        found.extend(_outcome(driven))
    found.extend(_running_answers(driven))
    found.extend(_hint_used(driven))
    found.extend(_slow_check(driven))
    return found.result()


def _delay_s(scenario: conformance_pb2.Scenario) -> float:
    return scenario.delay.ToNanoseconds() / 1e9 if scenario.HasField("delay") else 0.0


def _transport_errors(driven: Driven) -> Iterable[Failure]:
    """gRPC errors the engine does not retry: the plugin refused or failed the call itself."""
    for exchange in driven.exchanges:
        if exchange.response is not None or exchange.grpc_code in RETRIED_CODES:
            continue
        yield _failure(
            "TRANSPORT_ERROR",
            f"{exchange.label} failed with gRPC {exchange.grpc_code or 'error'}: "
            f"{exchange.error_message}",
        )


def _engine_failed_it(record: TaskRecord) -> bool:
    """True when the engine failed the task for a protocol violation (already named)."""
    if record.state is not TaskState.FAILED or record.error is None:
        return False
    error = record.error_proto()
    return error.code == EngineCode.PROTOCOL_VIOLATION and error.domain == ENGINE_DOMAIN


def _engine_gave_up(record: TaskRecord) -> bool:
    """True when the engine, not the plugin, failed the task (deadline, max checks...)."""
    return record.error is not None and record.error_proto().domain == ENGINE_DOMAIN


def _gave_up_hint(record: TaskRecord) -> str:
    if record.error_code in (EngineCode.MAX_CHECKS_EXCEEDED, EngineCode.DEADLINE_EXCEEDED):
        return (
            "; the plugin kept answering RUNNING (does it read is_status_check and "
            "context.check_number?)"
        )
    return ""


def _ended(record: TaskRecord) -> str:
    text = record.state.name
    if record.state is TaskState.FAILED and record.error is not None:
        error = record.error_proto()
        text += f" ({error.code or 'no code'}: {error.message})"
    return text


def _outcome(driven: Driven) -> Iterable[Failure]:
    record = driven.record
    if _engine_failed_it(record):
        return  # the broken rule is named by _answer_rules
    state, number = expected_end(driven.scenario)
    if state is TaskState.SUCCEEDED:
        yield from _succeeded(driven, number)
    elif state is TaskState.FAILED:
        yield from _failed(driven, number)
    else:
        yield from _cancelled(driven)


def _succeeded(driven: Driven, number: int) -> Iterable[Failure]:
    record, scenario = driven.record, driven.scenario
    if record.state is not TaskState.SUCCEEDED:
        yield _failure(
            "FINAL_STATE",
            f"the task ended {_ended(record)} after {record.check_count} status checks; "
            f"expected SUCCEEDED with data on check {number}{_gave_up_hint(record)}",
        )
        return
    if record.check_count != number:
        yield _failure(
            "CHECK_COUNT",
            f"the plugin answered data on check {record.check_count}; expected check {number}",
        )
    if record.result is None:
        yield _failure("SCENARIO_RESULT", "the SUCCEEDED answer carries no data")
        return
    try:
        result = conformance_pb2.ScenarioResult.FromString(record.result)
    except pb_message.DecodeError:
        yield _failure("SCENARIO_RESULT", "the answer's data is not a ScenarioResult")
        return
    want = conformance_pb2.ScenarioResult(
        scenario=scenario.name,
        check_number=number,
        task_id=record.task_id,
        idempotency_key=record.idempotency_key,
        implementation=result.implementation,
    )
    if scenario.HasField("result"):
        want.result.CopyFrom(scenario.result)
    differences = message_diff(want, result, "result")
    if differences:
        yield _failure("SCENARIO_RESULT", "; ".join(differences))


def _failed(driven: Driven, number: int) -> Iterable[Failure]:
    record, scenario = driven.record, driven.scenario
    if record.state is not TaskState.FAILED or _engine_gave_up(record):
        yield _failure(
            "FINAL_STATE",
            f"the task ended {_ended(record)} after {record.check_count} status checks; "
            f"expected FAILED with the scenario's error on check {number}{_gave_up_hint(record)}",
        )
        return
    if record.check_count != number:
        yield _failure(
            "CHECK_COUNT",
            f"the plugin answered FAILED on check {record.check_count}; expected check {number}",
        )
    differences = message_diff(scenario.fail_with, record.error_proto(), "error")
    if differences:
        yield _failure(
            "ERROR_ENVELOPE", "the recorded error envelope differs: " + "; ".join(differences)
        )


def _cancelled(driven: Driven) -> Iterable[Failure]:
    """The task ran until the engine cancelled it, and the plugin answered the cancel request."""
    record = driven.record
    if record.state is not TaskState.CANCELLED:
        yield _failure(
            "FINAL_STATE",
            f"the task ended {_ended(record)} after {record.check_count} status checks; "
            "expected RUNNING until the engine cancelled it",
        )
        return
    running = sum(
        1
        for ex in driven.exchanges
        if ex.request.is_status_check and not ex.request.cancel_requested and is_running(ex)
    )
    if running < driven.cancel_after_checks:
        yield _failure(
            "CANCEL_ANSWER",
            f"only {running} status checks were answered RUNNING before the cancel; "
            f"expected at least {driven.cancel_after_checks}",
        )
    yield from _cancel_answer(driven)


def _cancel_answer(driven: Driven) -> Iterable[Failure]:
    """The last cancel request was answered CANCELLED, and the engine recorded it so."""
    requests = [ex for ex in driven.exchanges if ex.request.cancel_requested]
    if not requests:
        yield _failure(
            "CANCEL_ANSWER",
            "the engine sent no cancel request (the plugin never answered RUNNING)",
        )
        return
    last = requests[-1]
    entries = [check for check in driven.checks if check.kind is CallKind.CANCEL]
    recorded = entries[-1].outcome if entries else None
    engine_said = f"; the engine recorded {recorded.value}" if recorded is not None else ""
    answer = last.answer()
    if answer is None:
        why = f"{last.grpc_code}: {last.error_message}" if last.grpc_code else "undecodable"
        yield _failure("CANCEL_ANSWER", f"the cancel request was not answered ({why}){engine_said}")
        return
    state = answer_state(answer)
    if state is not TaskState.CANCELLED:
        said = state.name if state is not None else "with an unreadable answer"
        yield _failure(
            "CANCEL_ANSWER",
            f"the cancel request was answered {said}; expected CANCELLED{engine_said}",
        )
    elif recorded is not None and recorded is not CheckOutcome.CANCELLED:
        yield _failure(
            "CANCEL_ANSWER",
            f"the cancel request was answered CANCELLED but the engine recorded {recorded.value}",
        )


def _running_answers(driven: Driven) -> Iterable[Failure]:
    """RUNNING answers carry what the scenario says: name, token, progress, check_after."""
    scenario = driven.scenario
    for exchange in driven.exchanges:
        if exchange.request.cancel_requested or not is_running(exchange):
            continue
        answer = exchange.answer()
        assert answer is not None
        yield from running_answer_failures(scenario, exchange, answer.status)


def _hint_used(driven: Driven) -> Iterable[Failure]:
    """With check_after, the engine's recorded reason for each interval names the hint."""
    if not driven.scenario.HasField("check_after"):
        return
    for check in driven.checks:
        if check.outcome is not CheckOutcome.RUNNING or check.interval_s is None:
            continue
        if not check.reason.startswith("plugin hint"):
            yield _failure(
                "CHECK_AFTER_HINT",
                f"the engine chose the interval after check {check.check_number} by "
                f"{check.reason!r}: the answer's check_after hint was not used",
            )


def _slow_check(driven: Driven) -> Iterable[Failure]:
    """A check delayed past the per-check timeout is retried, and the retry answered at once."""
    number = _delayed_check(driven)
    if number is None:
        return
    calls = [
        ex
        for ex in driven.exchanges
        if ex.check_number == number
        and ex.request.is_status_check
        and not ex.request.cancel_requested
    ]
    if not calls:
        return  # the task never got that far: other failures say why
    first, retries = calls[0], calls[1:]
    if first.response is not None:
        yield _failure(
            "SLOW_CHECK",
            f"check {number} was answered within the per-check timeout "
            f"({driven.policy.check_timeout_s:g} s); the scenario delays it "
            f"{_delay_s(driven.scenario):g} s",
        )
        return
    if not _timed_out(driven.checks, number):
        yield _failure(
            "SLOW_CHECK",
            f"the engine recorded no TRANSPORT_RETRY (DEADLINE_EXCEEDED) for check {number}",
        )
    if not any(ex.retries > 0 and ex.response is not None for ex in retries):
        yield _failure(
            "SLOW_CHECK",
            f"no retry of check {number} (status.retries > 0) was answered: a transport retry "
            "must be answered without the delay",
        )


def _delayed_check(driven: Driven) -> int | None:
    """The check number the scenario delays past the per-check timeout, if the task reaches it."""
    scenario = driven.scenario
    number = scenario.delay_on_check
    if _delay_s(scenario) <= driven.policy.check_timeout_s or number < 1:
        return None
    state, end = expected_end(scenario)
    if state is not TaskState.CANCELLED and end < number:
        return None
    return number


def _timed_out(checks: Iterable[CheckRecord], number: int) -> bool:
    """True when the engine recorded check `number` timing out, to be retried."""
    return any(
        check.kind is CallKind.CHECK
        and check.check_number == number
        and check.outcome is CheckOutcome.TRANSPORT_RETRY
        and check.grpc_code == "DEADLINE_EXCEEDED"
        for check in checks
    )

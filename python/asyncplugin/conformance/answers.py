"""What each answer of a plugin must be: the protocol rules, and RUNNING answers per scenario."""

from __future__ import annotations

import math
from collections.abc import Iterable

from asyncplugin.conformance.interpreter import expected_token
from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.engine import CheckOutcome, CheckRecord
from asyncplugin.protocol import Rule, TaskState, response_violations
from asyncplugin.v1 import plugin_pb2, task_pb2

from .findings import Exchange, Failure, to_json
from .requirements import PROTOCOL_RULES
from .requirements import kit_failure as _failure

__all__ = [
    "answer_rule_failures",
    "answer_state",
    "expected_progress",
    "is_running",
    "running_answer_failures",
]


def expected_progress(scenario: conformance_pb2.Scenario, check_number: int) -> task_pb2.Progress:
    """The progress a RUNNING answer to `check_number` reports (conformance.proto formula)."""
    total = scenario.checks_before_done + 1
    done = min(check_number, total)
    return task_pb2.Progress(
        fraction=done / total, done=done, total=total, stage=f"check-{check_number}"
    )


def answer_rule_failures(
    exchanges: Iterable[Exchange], checks: Iterable[CheckRecord] = ()
) -> Iterable[Failure]:
    """Every answer, checked against the protocol rules; plus violations the engine recorded."""
    named: set[tuple[str, int]] = set()
    for exchange in exchanges:
        if exchange.response is None:
            continue
        answer = exchange.answer()
        if answer is None:
            named.add((Rule.MALFORMED_MESSAGE, exchange.check_number))
            yield _failure(
                Rule.MALFORMED_MESSAGE,
                f"the answer to {exchange.label} does not decode as an InvokeResponse",
                PROTOCOL_RULES,
            )
            continue
        violations = response_violations(answer, cancel_requested=exchange.request.cancel_requested)
        for violation in violations:
            named.add((violation.rule, exchange.check_number))
            yield _failure(
                violation.rule,
                f"{violation.detail}, in the answer to {exchange.label}",
                PROTOCOL_RULES,
            )
    for check in checks:
        if check.outcome is not CheckOutcome.PROTOCOL_VIOLATION:
            continue
        rule, _, detail = check.message.partition(": ")
        if (rule, check.check_number) in named:
            continue
        yield _failure(
            rule,
            f"the engine recorded a protocol violation on {check.kind.value.lower()} "
            f"{check.check_number}: {detail}",
            PROTOCOL_RULES,
        )


def answer_state(answer: plugin_pb2.InvokeResponse) -> TaskState | None:
    """The state an answer claims: SUCCEEDED for data; None if it cannot be read."""
    if answer.HasField("data"):
        return TaskState.SUCCEEDED
    if not answer.HasField("status"):
        return None
    try:
        return TaskState(answer.status.state)
    except ValueError:
        return None


def is_running(exchange: Exchange) -> bool:
    """True when the exchange was answered RUNNING (no data)."""
    answer = exchange.answer()
    return (
        answer is not None
        and not answer.HasField("data")
        and answer.status.state == task_pb2.TASK_STATE_RUNNING
    )


def running_answer_failures(
    scenario: conformance_pb2.Scenario, exchange: Exchange, status: task_pb2.Task
) -> Iterable[Failure]:
    """What is wrong with one RUNNING answer of `scenario` (see conformance.proto)."""
    number = exchange.check_number
    where = f"the RUNNING answer to {exchange.label}"
    if status.HasField("remote_status_input"):
        stash = status.remote_status_input
        name = stash.fields.get("scenario")
        if name is None or name.string_value != scenario.name:
            yield _failure(
                "REMOTE_STATUS_INPUT",
                f"{where} carries remote_status_input {to_json(stash)}; expected "
                f'"scenario": {scenario.name!r}',
            )
        if scenario.rotate_remote_status_input:
            want = expected_token(exchange.task_id, number)
            token = stash.fields.get("token")
            got = repr(token.string_value) if token is not None else "no token"
            if token is None or token.string_value != want:
                yield _failure(
                    "REMOTE_STATUS_INPUT_ROTATION",
                    f"{where} carries {got}; expected token {want!r} (<task_id>:<check_number>)",
                )
    if scenario.report_progress:
        want_progress = expected_progress(scenario, number)
        if not status.HasField("progress") or not _same_progress(want_progress, status.progress):
            got_progress = to_json(status.progress) if status.HasField("progress") else "none"
            yield _failure(
                "PROGRESS",
                f"{where} reports progress {got_progress}; expected {to_json(want_progress)}",
            )
    if scenario.HasField("check_after") and (
        not status.HasField("check_after") or status.check_after != scenario.check_after
    ):
        got_hint = (
            f"{status.check_after.ToNanoseconds() / 1e9:g} s"
            if status.HasField("check_after")
            else "none"
        )
        yield _failure(
            "CHECK_AFTER",
            f"{where} carries check_after {got_hint}; expected "
            f"{scenario.check_after.ToNanoseconds() / 1e9:g} s",
        )


def _same_progress(want: task_pb2.Progress, got: task_pb2.Progress) -> bool:
    return (
        got.HasField("fraction")
        and math.isclose(got.fraction, want.fraction, rel_tol=1e-9, abs_tol=1e-12)
        and got.HasField("done")
        and got.done == want.done
        and got.HasField("total")
        and got.total == want.total
        and got.stage == want.stage
    )

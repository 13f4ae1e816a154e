"""Synthetic drives for the judge's unit tests: what an engine and a plugin would have recorded.

`simulate` plays the reference engine against an answering function (the reference interpreter
by default) without any network or clock, and returns the `Driven` the judge reads.
"""

from __future__ import annotations

from collections.abc import Callable

from asyncplugin.conformance.cases import FAST_POLICY
from asyncplugin.conformance.findings import Exchange
from asyncplugin.conformance.interpreter import delay_for, interpret
from asyncplugin.conformance.judge import Driven
from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.engine import (
    CallKind,
    CheckOutcome,
    CheckRecord,
    PollingPolicy,
    TaskRecord,
    errors,
)
from asyncplugin.engine.conversation import violation_error
from asyncplugin.protocol import TaskState, response_violations
from asyncplugin.v1 import plugin_pb2, task_pb2

TASK_ID = "task-1"
KEY = "key-1"

Answer = Callable[[conformance_pb2.Scenario, plugin_pb2.InvokeRequest], plugin_pb2.InvokeResponse]


def record(state: TaskState, **fields: object) -> TaskRecord:
    """A TaskRecord of the synthetic task."""
    return TaskRecord(
        task_id=TASK_ID,
        target="127.0.0.1:1",
        method="/asyncplugin.v1.PluginService/Invoke",
        state=state,
        payload=b"",
        idempotency_key=KEY,
        create_time=0.0,
        update_time=0.0,
        **fields,  # type: ignore[arg-type]
    )


def _check(kind: CallKind, number: int, outcome: CheckOutcome, **fields: object) -> CheckRecord:
    return CheckRecord(
        task_id=TASK_ID,
        kind=kind,
        check_number=number,
        started_time=float(number),
        finished_time=float(number),
        outcome=outcome,
        **fields,  # type: ignore[arg-type]
    )


def simulate(
    scenario: conformance_pb2.Scenario,
    *,
    answer: Answer = interpret,
    policy: PollingPolicy = FAST_POLICY,
    cancel_after: int | None = None,
    hint_honoured: bool = True,
    max_checks: int = 10,
) -> Driven:
    """Drives `scenario` against `answer` the way the reference engine does."""
    exchanges: list[Exchange] = []
    checks: list[CheckRecord] = []
    last: task_pb2.Task | None = None
    number, retries = 0, 0
    final = record(TaskState.FAILED)
    while True:
        cancel = cancel_after is not None and number == cancel_after + 1
        kind = CallKind.INITIATE if number == 0 else CallKind.CANCEL if cancel else CallKind.CHECK
        request = plugin_pb2.InvokeRequest(
            data=scenario.SerializeToString(),
            context=plugin_pb2.RequestContext(
                task_id=TASK_ID, idempotency_key=KEY, check_number=number
            ),
            is_status_check=number > 0,
            cancel_requested=cancel,
        )
        if last is not None:
            request.status.CopyFrom(last)
            request.status.retries = retries
        if delay_for(scenario, request) > policy.check_timeout_s:
            exchanges.append(
                Exchange(request=request, response=None, grpc_code="DEADLINE_EXCEEDED")
            )
            checks.append(
                _check(kind, number, CheckOutcome.TRANSPORT_RETRY, grpc_code="DEADLINE_EXCEEDED")
            )
            retries += 1
            continue
        response = answer(scenario, request)
        exchanges.append(Exchange(request=request, response=response.SerializeToString()))
        retries = 0
        violations = response_violations(response, cancel_requested=cancel)
        if violations:
            checks.append(
                _check(kind, number, CheckOutcome.PROTOCOL_VIOLATION, message=str(violations[0]))
            )
            envelope = violation_error(violations[0], target="127.0.0.1:1", method="/x.Y/Z")
            final = record(TaskState.FAILED, check_count=number, error=envelope)
            break
        status = response.status
        if cancel:
            outcome = (
                CheckOutcome.CANCELLED
                if status.state == task_pb2.TASK_STATE_CANCELLED
                else CheckOutcome.RUNNING
            )
            checks.append(_check(kind, number, outcome))
            final = record(TaskState.CANCELLED, check_count=number - 1)
            break
        if response.HasField("data"):
            checks.append(_check(kind, number, CheckOutcome.SUCCEEDED))
            final = record(TaskState.SUCCEEDED, check_count=number, result=response.data)
            break
        if status.state == task_pb2.TASK_STATE_FAILED:
            checks.append(_check(kind, number, CheckOutcome.FAILED))
            final = record(
                TaskState.FAILED, check_count=number, error=status.error.SerializeToString()
            )
            break
        hinted = status.HasField("check_after") and hint_honoured
        reason = "plugin hint 0.06s" if hinted else "backoff 0.05*1.6^0=0.05s jitter +0% -> 0.05s"
        checks.append(_check(kind, number, CheckOutcome.RUNNING, interval_s=0.05, reason=reason))
        last = task_pb2.Task()
        last.CopyFrom(status)
        number += 1
        if number > max_checks:
            error = errors.engine_error(errors.EngineCode.MAX_CHECKS_EXCEEDED, "still RUNNING")
            final = record(
                TaskState.FAILED, check_count=number - 1, error=error.SerializeToString()
            )
            break
    return Driven(
        scenario=scenario,
        policy=policy,
        record=final,
        checks=checks,
        exchanges=exchanges,
        cancel_after_checks=cancel_after or 0,
    )

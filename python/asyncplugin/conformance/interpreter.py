"""The reference scenario interpreter (see conformance.proto), over the v1 wire messages.

Stateless: everything it needs on a status check comes from the request. Used by the reference
conformance plugin; other languages implement the same contract (node/ does).
"""

from __future__ import annotations

from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.v1 import plugin_pb2, task_pb2

IMPLEMENTATION = "asyncplugin-python/0.1.0"


def expected_token(task_id: str, check_number: int) -> str:
    """The remote_status_input token a rotating scenario sends in its answer to a check."""
    return f"{task_id}:{check_number}"


def interpret(
    scenario: conformance_pb2.Scenario, request: plugin_pb2.InvokeRequest
) -> plugin_pb2.InvokeResponse:
    """Answers one call of `scenario` (delays are the caller's job: see `delay_for`)."""
    number = request.context.check_number
    task_id = request.context.task_id
    if request.cancel_requested:
        return plugin_pb2.InvokeResponse(
            status=task_pb2.Task(state=task_pb2.TASK_STATE_CANCELLED, status_message="cancelled")
        )
    if scenario.HasField("fail_with") and number == scenario.fail_on_check:
        return _failed(scenario.fail_with.SerializeToString())
    if scenario.rotate_remote_status_input and request.is_status_check:
        echoed = request.status.remote_status_input.fields.get("token")
        want = expected_token(task_id, number - 1)
        if echoed is None or echoed.string_value != want:
            got = echoed.string_value if echoed is not None else "(absent)"
            return _error(
                "REMOTE_STATUS_INPUT_NOT_ECHOED",
                f"check {number} echoed token {got!r}; expected {want!r}",
            )
    done = not scenario.run_until_cancelled and number >= scenario.checks_before_done
    if done:
        result = conformance_pb2.ScenarioResult(
            scenario=scenario.name,
            check_number=number,
            task_id=task_id,
            idempotency_key=request.context.idempotency_key,
            implementation=IMPLEMENTATION,
        )
        if scenario.HasField("result"):
            result.result.CopyFrom(scenario.result)
        return plugin_pb2.InvokeResponse(data=result.SerializeToString(deterministic=True))
    task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING, status_message=f"check {number}")
    task.remote_status_input.update({"scenario": scenario.name})
    if scenario.rotate_remote_status_input:
        task.remote_status_input.update({"token": expected_token(task_id, number)})
    if scenario.report_progress:
        total = scenario.checks_before_done + 1
        done_units = min(number, total)
        task.progress.CopyFrom(
            task_pb2.Progress(
                fraction=done_units / total, done=done_units, total=total, stage=f"check-{number}"
            )
        )
    if scenario.HasField("check_after"):
        task.check_after.CopyFrom(scenario.check_after)
    return plugin_pb2.InvokeResponse(status=task)


def delay_for(scenario: conformance_pb2.Scenario, request: plugin_pb2.InvokeRequest) -> float:
    """Seconds to wait before answering this call (0 when the scenario sets no delay for it)."""
    if (
        scenario.HasField("delay")
        and request.context.check_number == scenario.delay_on_check
        and request.status.retries == 0
    ):
        return scenario.delay.ToNanoseconds() / 1e9
    return 0.0


def _failed(error_bytes: bytes) -> plugin_pb2.InvokeResponse:
    task = task_pb2.Task(state=task_pb2.TASK_STATE_FAILED)
    task.error.ParseFromString(error_bytes)
    task.status_message = task.error.message
    task.status_code = task.error.code
    return plugin_pb2.InvokeResponse(status=task)


def _error(code: str, message: str) -> plugin_pb2.InvokeResponse:
    task = task_pb2.Task(state=task_pb2.TASK_STATE_FAILED, status_code=code, status_message=message)
    task.error.message = message
    task.error.code = code
    return plugin_pb2.InvokeResponse(status=task)

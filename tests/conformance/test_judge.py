"""The plugin judge on synthetic drives: a perfect plugin passes, each fault fails by name."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from asyncplugin.conformance.cases import CASES, Mode, case_named
from asyncplugin.conformance.findings import Exchange, Failure, FailureLog, message_diff
from asyncplugin.conformance.interpreter import interpret
from asyncplugin.conformance.judge import Driven, judge_driven
from asyncplugin.conformance.probe import judge_probe, probe_request
from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.engine import CallKind, CheckOutcome, CheckRecord
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2
from tests.conformance.synthetic import TASK_ID, record, simulate

Scenario = conformance_pb2.Scenario
Request = plugin_pb2.InvokeRequest
Response = plugin_pb2.InvokeResponse


def names(failures: list[Failure]) -> list[str]:
    return [failure.name for failure in failures]


def drive(name: str, **kwargs: object) -> Driven:
    case = case_named(name)
    if case.cancel_after_checks:
        kwargs.setdefault("cancel_after", case.cancel_after_checks)
    return simulate(case.scenario, policy=case.policy, **kwargs)  # type: ignore[arg-type]


def broken(change: Callable[[Scenario, Request, Response], None]) -> Callable[..., Response]:
    """The reference interpreter with one change applied to its answers."""

    def answer(scenario: Scenario, request: Request) -> Response:
        response = interpret(scenario, request)
        change(scenario, request, response)
        return response

    return answer


@pytest.mark.parametrize("name", [case.name for case in CASES if case.mode is not Mode.PROBE])
def test_the_reference_interpreter_passes_every_engine_case(name: str) -> None:
    """A drive of the reference interpreter, as the reference engine records it, has no failure."""
    assert judge_driven(drive(name)) == []


def test_running_without_remote_status_input_is_named_with_its_source() -> None:
    """An answer breaking a protocol rule fails with the rule's name and plugin.proto cited."""

    def drop(scenario: Scenario, request: Request, response: Response) -> None:
        if response.HasField("status"):
            response.status.ClearField("remote_status_input")

    failures = judge_driven(drive("async-after-checks", answer=broken(drop)))
    assert names(failures) == ["RUNNING_WITHOUT_REMOTE_STATUS_INPUT"]
    text = str(failures[0])
    assert text.startswith("RUNNING_WITHOUT_REMOTE_STATUS_INPUT: status is RUNNING but has no")
    assert "the initiating call" in text
    assert text.endswith("(plugin.proto, Protocol rules)")


def test_a_violation_only_the_engine_recorded_is_named() -> None:
    """A PROTOCOL_VIOLATION in the check history is reported by rule even without exchanges."""
    driven = Driven(
        scenario=case_named("sync-answer").scenario,
        policy=case_named("sync-answer").policy,
        record=record(TaskState.FAILED),
        checks=[
            CheckRecord(
                task_id=TASK_ID,
                kind=CallKind.INITIATE,
                check_number=0,
                started_time=0.0,
                finished_time=0.0,
                outcome=CheckOutcome.PROTOCOL_VIOLATION,
                message="NO_DATA_OR_STATUS: the answer sets neither data nor status",
            )
        ],
    )
    failures = judge_driven(driven)
    assert names(failures)[0] == "NO_DATA_OR_STATUS"
    assert "initiate 0" in failures[0].message


def test_a_token_that_does_not_rotate_fails_rotation() -> None:
    """Every RUNNING answer of a rotating scenario carries "<task_id>:<check_number>"."""

    def stale(scenario: Scenario, request: Request, response: Response) -> None:
        if response.HasField("status") and response.status.state == task_pb2.TASK_STATE_RUNNING:
            response.status.remote_status_input["token"] = f"{TASK_ID}:0"

    def lenient(scenario: Scenario, request: Request) -> Response:
        # Verifies nothing (as --break no-echo), so the scenario still succeeds.
        quiet = Scenario()
        quiet.CopyFrom(scenario)
        quiet.rotate_remote_status_input = False
        response = interpret(quiet, request)
        if response.HasField("status"):
            response.status.remote_status_input["token"] = f"{TASK_ID}:0"
        return response

    failures = judge_driven(drive("remote-status-input-rotation", answer=lenient))
    assert names(failures) == ["REMOTE_STATUS_INPUT_ROTATION"]
    assert f"expected token '{TASK_ID}:1'" in failures[0].message
    assert "and 1 more like it" in failures[0].message
    # The interpreter itself rejects the stale echo and fails the task:
    strict = judge_driven(drive("remote-status-input-rotation", answer=broken(stale)))
    assert names(strict)[:2] == ["FINAL_STATE", "REMOTE_STATUS_INPUT_ROTATION"]
    assert "REMOTE_STATUS_INPUT_NOT_ECHOED" in strict[0].message


def test_wrong_progress_and_a_missing_hint_fail() -> None:
    """Progress follows the formula, and every RUNNING answer carries the check_after hint."""

    def skew(scenario: Scenario, request: Request, response: Response) -> None:
        if response.HasField("status"):
            response.status.progress.fraction = 0.5
            response.status.ClearField("check_after")

    failures = judge_driven(drive("progress-and-check-after", answer=broken(skew)))
    assert names(failures) == ["PROGRESS", "CHECK_AFTER", "CHECK_AFTER_HINT"]


def test_an_engine_that_ignores_the_hint_is_reported() -> None:
    """The engine's recorded reason must show the plugin's hint was used."""
    failures = judge_driven(drive("progress-and-check-after", hint_honoured=False))
    assert names(failures) == ["CHECK_AFTER_HINT"]
    assert "backoff" in failures[0].message


def test_a_changed_error_envelope_names_the_fields() -> None:
    """FAILED must carry exactly the scenario's envelope, nested wrapped_error included."""

    def mangle(scenario: Scenario, request: Request, response: Response) -> None:
        if response.status.state == task_pb2.TASK_STATE_FAILED:
            response.status.error.suggestion = ""
            response.status.error.wrapped_error.code = "OTHER"

    failures = judge_driven(drive("failed-on-check", answer=broken(mangle)))
    assert names(failures) == ["ERROR_ENVELOPE"]
    assert "error.suggestion is ''" in failures[0].message
    assert (
        "error.wrapped_error.code is 'OTHER'; expected 'UPSTREAM_REJECTED'" in failures[0].message
    )


def test_a_result_that_does_not_echo_the_engine_fails() -> None:
    """ScenarioResult echoes the scenario name, result, check number, task id and key."""

    def forget(scenario: Scenario, request: Request, response: Response) -> None:
        if response.HasField("data"):
            result = conformance_pb2.ScenarioResult.FromString(response.data)
            result.idempotency_key = ""
            result.check_number = 7
            response.data = result.SerializeToString()

    failures = judge_driven(drive("async-after-checks", answer=broken(forget)))
    assert names(failures) == ["SCENARIO_RESULT"]
    assert "result.check_number is 7; expected 3" in failures[0].message
    assert "result.idempotency_key is ''" in failures[0].message


def test_answering_too_early_fails_the_check_count() -> None:
    """Data on check 1 of a scenario that needs 3 checks is the wrong check."""

    def early(scenario: Scenario, request: Request, response: Response) -> None:
        if request.is_status_check:
            done = Scenario()
            done.CopyFrom(scenario)
            done.checks_before_done = 0
            response.CopyFrom(interpret(done, request))

    failures = judge_driven(drive("async-after-checks", answer=broken(early)))
    assert names(failures) == ["CHECK_COUNT", "SCENARIO_RESULT"]


def test_a_plugin_that_never_finishes_is_told_to_read_is_status_check() -> None:
    """RUNNING forever ends in MAX_CHECKS_EXCEEDED; the message points at is_status_check."""

    def never(scenario: Scenario, request: Request, response: Response) -> None:
        if response.HasField("data"):
            response.Clear()
            response.status.state = task_pb2.TASK_STATE_RUNNING
            response.status.remote_status_input["scenario"] = scenario.name

    failures = judge_driven(drive("async-after-checks", answer=broken(never)))
    assert names(failures) == ["FINAL_STATE"]
    assert "MAX_CHECKS_EXCEEDED" in failures[0].message
    assert "is_status_check" in failures[0].message


def test_a_cancel_request_answered_running_fails() -> None:
    """The cancel request must be answered CANCELLED."""

    def ignore(scenario: Scenario, request: Request, response: Response) -> None:
        if request.cancel_requested:
            quiet = plugin_pb2.InvokeRequest()
            quiet.CopyFrom(request)
            quiet.cancel_requested = False
            response.CopyFrom(interpret(scenario, quiet))

    failures = judge_driven(drive("cancel", answer=broken(ignore)))
    assert names(failures) == ["CANCEL_ANSWER"]
    assert "answered RUNNING; expected CANCELLED" in failures[0].message


def test_cancelled_without_request_is_a_protocol_violation() -> None:
    """CANCELLED answered to an ordinary check breaks CANCELLED_WITHOUT_REQUEST."""

    def cancel_early(scenario: Scenario, request: Request, response: Response) -> None:
        if request.context.check_number == 1:
            response.Clear()
            response.status.state = task_pb2.TASK_STATE_CANCELLED

    failures = judge_driven(drive("cancel", answer=broken(cancel_early)))
    assert names(failures) == ["CANCELLED_WITHOUT_REQUEST"]


def test_a_slow_check_answered_in_time_and_a_slow_retry_fail() -> None:
    """The delayed check must exceed the timeout, and its retry must not be delayed."""
    case = case_named("slow-check")
    driven = drive("slow-check")
    assert judge_driven(driven) == []
    answered = [ex for ex in driven.exchanges if ex.response is not None]
    in_time = Driven(
        scenario=driven.scenario,
        policy=driven.policy,
        record=driven.record,
        checks=[c for c in driven.checks if c.outcome is not CheckOutcome.TRANSPORT_RETRY],
        exchanges=answered,
    )
    failures = judge_driven(in_time)
    assert names(failures) == ["SLOW_CHECK"]
    assert "within the per-check timeout (0.3 s)" in failures[0].message
    retried_slowly = Driven(
        scenario=case.scenario,
        policy=case.policy,
        record=record(TaskState.FAILED, check_count=1),
        checks=driven.checks,
        exchanges=[ex for ex in driven.exchanges if ex.check_number < 1]
        + [
            Exchange(request=ex.request, response=None, grpc_code="DEADLINE_EXCEEDED")
            for ex in driven.exchanges
            if ex.check_number == 1
        ],
    )
    failures = judge_driven(retried_slowly)
    assert names(failures) == ["FINAL_STATE", "SLOW_CHECK"]
    assert "no retry of check 1 (status.retries > 0) was answered" in failures[1].message


def test_a_non_retried_grpc_error_is_a_transport_error() -> None:
    """A call the plugin refused (INVALID_ARGUMENT, INTERNAL...) fails TRANSPORT_ERROR."""
    driven = drive("sync-answer")
    refused = Driven(
        scenario=driven.scenario,
        policy=driven.policy,
        record=record(TaskState.FAILED),
        exchanges=[
            Exchange(
                request=driven.exchanges[0].request,
                response=None,
                grpc_code="INTERNAL",
                error_message="NO_DATA_OR_STATUS: the answer sets neither data nor status",
            )
        ],
    )
    failures = judge_driven(refused)
    assert names(failures) == ["TRANSPORT_ERROR", "FINAL_STATE"]
    assert "the initiating call failed with gRPC INTERNAL: NO_DATA_OR_STATUS" in str(failures[0])


def test_a_timeout_is_reported() -> None:
    """A case the kit gave up on fails TIMEOUT."""
    driven = drive("async-after-checks")
    late = Driven(
        scenario=driven.scenario,
        policy=driven.policy,
        record=record(TaskState.RUNNING, check_count=1),
        timed_out_s=30.0,
    )
    assert names(judge_driven(late)) == ["TIMEOUT"]


def test_probe_passes_the_reference_and_fails_a_plugin_that_does_not_verify() -> None:
    """The echo probe: right echo accepted, stale echo answered REMOTE_STATUS_INPUT_NOT_ECHOED."""
    scenario = case_named("echo-verification").scenario

    def exchange(answer: Callable[[Scenario, Request], Response], echoed: int) -> Exchange:
        request = probe_request(scenario, "probe-1", echoed_check=echoed)
        return Exchange(request=request, response=answer(scenario, request).SerializeToString())

    assert judge_probe(scenario, exchange(interpret, 1), exchange(interpret, 0)) == []

    def trusting(scenario: Scenario, request: Request) -> Response:
        quiet = Scenario()
        quiet.CopyFrom(scenario)
        quiet.rotate_remote_status_input = False
        response = interpret(quiet, request)
        response.status.remote_status_input["token"] = f"probe-1:{request.context.check_number}"
        return response

    failures = judge_probe(scenario, exchange(trusting, 1), exchange(trusting, 0))
    assert names(failures) == ["ECHO_VERIFICATION"]
    assert "REMOTE_STATUS_INPUT_NOT_ECHOED" in failures[0].message


def test_message_diff_names_nested_fields() -> None:
    """Differences are listed per field, recursing into wrapped errors."""
    want = error_pb2.Error(message="a", wrapped_error=error_pb2.Error(message="b", code="X"))
    got = error_pb2.Error(message="a", wrapped_message="b")
    assert message_diff(want, got, "error") == [
        "error.wrapped_message is 'b'; expected ''",
        "error.wrapped_error is absent; expected it set",
    ]


def test_failure_log_folds_repeats() -> None:
    """Later failures of one name are counted into the first."""
    log = FailureLog(citations={"X": "somewhere"})
    log.add("X", "first")
    log.add("X", "second")
    log.add("Y", "other", "here")
    assert [str(f) for f in log.result()] == [
        "X: first (and 1 more like it) (somewhere)",
        "Y: other (here)",
    ]

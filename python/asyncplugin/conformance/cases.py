"""The scenario catalogue: what the conformance kit asks a plugin (or an engine) to do, and why.

Each `Case` is one scenario sent through the reference engine, the protocol requirement it checks
and where the spec says so. What is expected of the plugin follows from the Scenario itself (see
`judge.py`); a case adds only how the engine drives it (a polling policy, a cancel after some
checks, or a direct probe instead of the engine).

`ENGINE_SCENARIOS` are the payloads an engine under test submits to the reference conformance
plugin in the reverse direction (`asyncplugin conformance serve`, then `judge-engine`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import duration_pb2, struct_pb2

from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.engine import PollingPolicy, TransportRetryPolicy
from asyncplugin.protocol import dict_to_struct
from asyncplugin.v1 import error_pb2

__all__ = [
    "ALL_SCENARIOS",
    "CASES",
    "ENGINE_SCENARIOS",
    "FAST_POLICY",
    "FAST_RETRY",
    "Case",
    "EngineScenario",
    "Mode",
    "case_named",
]

FAST_POLICY: Final = PollingPolicy(
    initial_interval_s=0.05,
    multiplier=1.6,
    max_interval_s=0.2,
    min_interval_s=0.02,
    jitter=0.2,
    max_checks=8,
    deadline_s=20.0,
    check_timeout_s=5.0,
)
"""Short intervals so the whole kit runs in about a second against a real server."""

FAST_RETRY: Final = TransportRetryPolicy(
    initial_backoff_s=0.05, multiplier=2.0, max_backoff_s=0.2, min_backoff_s=0.02, max_retries=3
)
"""Transport retries on the same short scale."""

SLOW_CHECK_TIMEOUT_S: Final = 0.3
"""The per-check timeout of the slow-check case; its scenario delays check 1 three times that."""


class Mode(enum.Enum):
    """How the kit runs a case."""

    ENGINE = "engine"
    """Submit the scenario to the reference engine and wait for the end."""
    CANCEL = "cancel"
    """Submit it, and cancel the task once the engine has recorded `cancel_after_checks` checks."""
    PROBE = "probe"
    """Send hand-made requests directly (what the reference engine never sends)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One conformance case.

    Attributes:
        name: the case's name (also the Scenario's name), shown in reports.
        requirement: what the protocol requires, in one or two sentences.
        citation: where the spec says so: file and message/field or rule name.
        scenario: the payload sent to the plugin.
        mode: how the kit runs it.
        policy: the polling policy of the task.
        retry_policy: the transport retry policy of the task.
        cancel_after_checks: with Mode.CANCEL, how many RUNNING status checks before cancelling.
    """

    name: str
    requirement: str
    citation: str
    scenario: conformance_pb2.Scenario
    mode: Mode = Mode.ENGINE
    policy: PollingPolicy = FAST_POLICY
    retry_policy: TransportRetryPolicy = FAST_RETRY
    cancel_after_checks: int = 0


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    return dict_to_struct(value)


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _scenario(name: str, **fields: object) -> conformance_pb2.Scenario:
    return conformance_pb2.Scenario(name=name, **fields)  # type: ignore[arg-type]


_INITIATION_ERROR = error_pb2.Error(
    message="The conformance scenario failed on purpose.",
    internal_message="scenario failed-on-initiation: fail_on_check 0",
    suggestion="Nothing to do: the conformance kit expects this failure.",
    code="CONFORMANCE_FAILURE",
    rpc_code=9,
    domain="conformance.asyncplugin.v1",
    metadata={"scenario": "failed-on-initiation", "check": "0"},
    wrapped_message="upstream said: quota exceeded",
)

_CHECK_ERROR = error_pb2.Error(
    message="The remote job failed on check 2.",
    internal_message="scenario failed-on-check: fail_on_check 2",
    suggestion="Retry with a smaller input.",
    code="REMOTE_JOB_FAILED",
    rpc_code=10,
    domain="conformance.asyncplugin.v1",
    metadata={"scenario": "failed-on-check"},
    wrapped_error=error_pb2.Error(
        message="The upstream service rejected the job.",
        code="UPSTREAM_REJECTED",
        wrapped_message="HTTP 422: input too large",
    ),
)

CASES: Final[tuple[Case, ...]] = (
    Case(
        name="sync-answer",
        requirement="An answer with data means SUCCEEDED at once; the ScenarioResult echoes the "
        "scenario name, its result Struct, check_number 0, and the engine's task_id and "
        "idempotency_key.",
        citation="plugin.proto InvokeResponse.data; conformance.proto "
        "Scenario.checks_before_done, ScenarioResult",
        scenario=_scenario(
            "sync-answer",
            checks_before_done=0,
            result=_struct(
                {"answer": 42, "text": "ünïcødé", "nested": {"list": [1.5, "two", True, None]}}
            ),
        ),
    ),
    Case(
        name="async-after-checks",
        requirement="A RUNNING answer carries remote_status_input; the same method answers each "
        "status check (is_status_check = true) until it answers data on check 3, whose "
        "ScenarioResult has check_number 3 and the engine's task_id and idempotency_key.",
        citation="plugin.proto (One conversation, steps 1-4), RequestContext.check_number; "
        "conformance.proto Scenario.checks_before_done, ScenarioResult",
        scenario=_scenario(
            "async-after-checks", checks_before_done=3, result=_struct({"done": True})
        ),
    ),
    Case(
        name="remote-status-input-rotation",
        requirement="Every RUNNING answer's remote_status_input.token is '<task_id>:"
        "<check_number>', and each status check verifies the echo of the previous token.",
        citation="conformance.proto Scenario.rotate_remote_status_input; task.proto "
        "Task.remote_status_input; plugin.proto InvokeRequest.status",
        scenario=_scenario(
            "remote-status-input-rotation",
            checks_before_done=3,
            rotate_remote_status_input=True,
            result=_struct({"rotated": True}),
        ),
    ),
    Case(
        name="echo-verification",
        requirement="A status check echoing the previous token is accepted; one echoing a stale "
        "token is answered FAILED with code REMOTE_STATUS_INPUT_NOT_ECHOED.",
        citation="conformance.proto Scenario.rotate_remote_status_input",
        scenario=_scenario(
            "echo-verification", checks_before_done=4, rotate_remote_status_input=True
        ),
        mode=Mode.PROBE,
    ),
    Case(
        name="progress-and-check-after",
        requirement="RUNNING answers report progress (total = N + 1, done = min(n, total), "
        "fraction = done / total, stage 'check-<n>') and carry check_after; the engine "
        "schedules the next check by that hint.",
        citation="conformance.proto Scenario.report_progress, Scenario.check_after; task.proto "
        "Task.check_after, Progress",
        scenario=_scenario(
            "progress-and-check-after",
            checks_before_done=3,
            report_progress=True,
            check_after=_duration(0.06),
        ),
    ),
    Case(
        name="failed-on-initiation",
        requirement="A FAILED answer to the initiating call carries exactly the scenario's error "
        "envelope (message, code, suggestion, internal_message, rpc_code, domain, metadata, "
        "wrapped), and the engine records it.",
        citation="conformance.proto Scenario.fail_with; task.proto Task.error; error.proto Error; "
        "plugin.proto rule FAILED_WITHOUT_ERROR",
        scenario=_scenario(
            "failed-on-initiation", checks_before_done=2, fail_with=_INITIATION_ERROR
        ),
    ),
    Case(
        name="failed-on-check",
        requirement="A FAILED answer to status check 2 carries exactly the scenario's error "
        "envelope, nested wrapped_error included, and the engine records it.",
        citation="conformance.proto Scenario.fail_with, Scenario.fail_on_check; error.proto "
        "Error.wrapped_error",
        scenario=_scenario(
            "failed-on-check", checks_before_done=5, fail_with=_CHECK_ERROR, fail_on_check=2
        ),
    ),
    Case(
        name="cancel",
        requirement="A cancel request (cancel_requested = true on a status check) is answered "
        "CANCELLED; RUNNING answers before it keep the progress rules.",
        citation="plugin.proto InvokeRequest.cancel_requested, rule CANCELLED_WITHOUT_REQUEST; "
        "conformance.proto Scenario.run_until_cancelled, Scenario.report_progress",
        scenario=_scenario("cancel", run_until_cancelled=True, report_progress=True),
        mode=Mode.CANCEL,
        cancel_after_checks=2,
    ),
    Case(
        name="slow-check",
        requirement="A check slower than the engine's per-check timeout is a transport retry "
        "(DEADLINE_EXCEEDED), not a failure; the retry (status.retries > 0) is answered "
        "without delay and the task succeeds.",
        citation="plugin.proto Engine behaviour (gRPC errors); conformance.proto Scenario.delay, "
        "Scenario.delay_on_check; task.proto Task.retries",
        scenario=_scenario(
            "slow-check",
            checks_before_done=2,
            delay=_duration(3 * SLOW_CHECK_TIMEOUT_S),
            delay_on_check=1,
        ),
        policy=PollingPolicy(
            initial_interval_s=0.05,
            multiplier=1.6,
            max_interval_s=0.2,
            min_interval_s=0.02,
            max_checks=8,
            deadline_s=20.0,
            check_timeout_s=SLOW_CHECK_TIMEOUT_S,
        ),
    ),
)
"""Every case of `asyncplugin conformance plugin`, in report order."""


def case_named(name: str) -> Case:
    """The case called `name`.

    Raises:
        KeyError: no case has that name.
    """
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineScenario:
    """A payload an engine under test submits to the reference conformance plugin.

    Attributes:
        scenario: the Scenario to submit as the payload (InvokeRequest.data).
        how: what the engine's operator does with it.
    """

    scenario: conformance_pb2.Scenario
    how: str

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.scenario.name


ENGINE_SCENARIOS: Final[tuple[EngineScenario, ...]] = (
    EngineScenario(scenario=_scenario("engine-sync"), how="submit; it succeeds at once"),
    EngineScenario(
        scenario=_scenario(
            "engine-rotating",
            checks_before_done=5,
            rotate_remote_status_input=True,
            report_progress=True,
        ),
        how="submit; it succeeds on check 5 if remote_status_input is echoed each time",
    ),
    EngineScenario(
        scenario=_scenario("engine-hint", checks_before_done=3, check_after=_duration(0.1)),
        how="submit; every RUNNING answer hints check_after = 0.1 s",
    ),
    EngineScenario(
        scenario=_scenario(
            "engine-fail",
            checks_before_done=5,
            fail_on_check=2,
            fail_with=error_pb2.Error(message="Failed on purpose.", code="CONFORMANCE_FAILURE"),
        ),
        how="submit; it fails on check 2 and must not be checked again",
    ),
    EngineScenario(
        scenario=_scenario(
            "engine-slow", checks_before_done=2, delay=_duration(1.0), delay_on_check=1
        ),
        how="submit with a per-check timeout under 1 s: check 1 times out and is retried",
    ),
    EngineScenario(
        scenario=_scenario(
            "engine-cancel", run_until_cancelled=True, rotate_remote_status_input=True
        ),
        how="submit, then cancel it after a few status checks",
    ),
)
"""What an engine under test submits in the reverse direction (`asyncplugin conformance
scenarios` prints them)."""

ALL_SCENARIOS: Final[Mapping[str, conformance_pb2.Scenario]] = {
    **{case.name: case.scenario for case in CASES},
    **{item.name: item.scenario for item in ENGINE_SCENARIOS},
}
"""Every published scenario by name: the engine judge recomputes the reference plugin's answers
from these."""

"""The plugin kit's requirements: the name and citation of each, and the failure naming one."""

from __future__ import annotations

from .findings import Failure

__all__ = ["CITATIONS", "NOT_ECHOED", "PROTOCOL_RULES", "RETRIED_CODES", "kit_failure"]

PROTOCOL_RULES = "plugin.proto, Protocol rules"
"""Where every named protocol rule is stated."""


NOT_ECHOED = "REMOTE_STATUS_INPUT_NOT_ECHOED"
"""The error code a rotating scenario answers when the echoed token is wrong (conformance.proto)."""


CITATIONS = {
    "TRANSPORT_ERROR": "plugin.proto, Engine behaviour a plugin can rely on (gRPC errors)",
    "FINAL_STATE": "conformance.proto, Scenario",
    "CHECK_COUNT": "conformance.proto, Scenario.checks_before_done",
    "SCENARIO_RESULT": "conformance.proto, ScenarioResult",
    "ERROR_ENVELOPE": "conformance.proto, Scenario.fail_with; error.proto, Error",
    "REMOTE_STATUS_INPUT": "conformance.proto, Scenario.rotate_remote_status_input",
    "REMOTE_STATUS_INPUT_ROTATION": "conformance.proto, Scenario.rotate_remote_status_input",
    "ECHO_VERIFICATION": "conformance.proto, Scenario.rotate_remote_status_input",
    "PROGRESS": "conformance.proto, Scenario.report_progress",
    "CHECK_AFTER": "conformance.proto, Scenario.check_after; task.proto, Task.check_after",
    "CHECK_AFTER_HINT": "task.proto, Task.check_after",
    "CANCEL_ANSWER": "plugin.proto, InvokeRequest.cancel_requested",
    "SLOW_CHECK": "conformance.proto, Scenario.delay; plugin.proto, Engine behaviour (gRPC errors)",
    "TIMEOUT": "conformance kit",
}
"""Where each kit requirement is written down (protocol rules cite PROTOCOL_RULES)."""


RETRIED_CODES = frozenset({"DEADLINE_EXCEEDED", "UNAVAILABLE", "CANCELLED"})
"""gRPC codes an engine retries: a passing transport fault, not a plugin failure (plugin.proto,
Engine behaviour). If retries run out, the task's end says so."""


def kit_failure(name: str, message: str, citation: str | None = None) -> Failure:
    """A failure of `name`, cited from CITATIONS unless a citation is given."""
    return Failure(name=name, message=message, citation=citation or CITATIONS.get(name, ""))

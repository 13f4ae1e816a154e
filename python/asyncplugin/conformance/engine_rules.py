"""The engine kit's rules (name, requirement, citation) and the verdict it gives by rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from asyncplugin.protocol import Rule

from .findings import Failure

__all__ = ["ENGINE_CITATIONS", "ENGINE_RULES", "EngineRule", "EngineVerdict", "engine_failure"]


@dataclass(frozen=True, slots=True)
class EngineRule:
    """One rule the engine judge checks: what is required, and where it is written."""

    name: str
    requirement: str
    citation: str


ENGINE_RULES: Final[tuple[EngineRule, ...]] = (
    EngineRule(
        "CHECK_NUMBER_NOT_SEQUENTIAL",
        "check_number is 0 on the initiating call, then 1, 2, 3...; only a transport retry "
        "repeats a number",
        "plugin.proto RequestContext.check_number",
    ),
    EngineRule(
        Rule.CHECK_NUMBER_MISMATCH,
        "is_status_check is false only on check 0 and true on every check >= 1",
        "plugin.proto, Protocol rules",
    ),
    EngineRule(
        Rule.STATUS_CHECK_WITHOUT_STATUS,
        "a status check carries status with remote_status_input",
        "plugin.proto, Protocol rules",
    ),
    EngineRule(
        "REMOTE_STATUS_INPUT_NOT_ECHOED",
        "a status check carries remote_status_input exactly as the plugin last answered it",
        "plugin.proto InvokeRequest.status; task.proto Task.remote_status_input",
    ),
    EngineRule(
        "PAYLOAD_CHANGED",
        "every call of a task carries the same payload",
        "plugin.proto InvokeRequest.data",
    ),
    EngineRule(
        "TASK_ID_CHANGED",
        "task_id is set and the same on every call of a task",
        "plugin.proto RequestContext.task_id",
    ),
    EngineRule(
        "IDEMPOTENCY_KEY_CHANGED",
        "idempotency_key is set and the same on every call of a task",
        "plugin.proto RequestContext.idempotency_key",
    ),
    EngineRule(
        "IDEMPOTENCY_KEY_REUSED",
        "an idempotency_key is unique across tasks",
        "plugin.proto RequestContext.idempotency_key",
    ),
    EngineRule(
        "DEADLINE_CHANGED",
        "the deadline is the same on every call of a task (or always unset)",
        "plugin.proto RequestContext.deadline",
    ),
    EngineRule(
        "CANCEL_REPEATED",
        "cancel_requested is sent at most once per task",
        "plugin.proto InvokeRequest.cancel_requested",
    ),
    EngineRule(
        "CANCEL_WITHOUT_STATUS_CHECK",
        "cancel_requested comes only on a status check (is_status_check = true)",
        "plugin.proto InvokeRequest.cancel_requested",
    ),
    EngineRule(
        "CALL_AFTER_CANCEL",
        "after the cancel request the engine records CANCELLED and calls no more",
        "plugin.proto InvokeRequest.cancel_requested",
    ),
    EngineRule(
        "CALL_AFTER_FINISH",
        "no call follows an answer with data or FAILED",
        "plugin.proto, One conversation (steps 2 and 4)",
    ),
    EngineRule(
        "INTERVAL_BELOW_FLOOR",
        "status checks of one task are never closer than the floor",
        "plugin.proto, One conversation (step 3); task.proto Task.check_after",
    ),
    EngineRule(
        "INTERVAL_SHRANK",
        "intervals between status checks grow (jitter aside) unless a check_after hint says "
        "otherwise",
        "plugin.proto, One conversation (step 3: increasingly longer intervals)",
    ),
)
"""Every rule `judge_engine` checks, in report order."""


ENGINE_CITATIONS: Final = {rule.name: f"{rule.citation}" for rule in ENGINE_RULES}


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineVerdict:
    """The verdict on an engine.

    Attributes:
        failures: every named failure; empty when the engine passed.
        notes: what could not be judged, and why.
        tasks: how many tasks were observed.
        calls: how many calls were observed.
    """

    failures: tuple[Failure, ...]
    notes: tuple[str, ...] = ()
    tasks: int = 0
    calls: int = 0

    @property
    def passed(self) -> bool:
        """True when there is no failure (and something was observed)."""
        return not self.failures and self.calls > 0

    def failures_of(self, rule: str) -> list[Failure]:
        """The failures of one rule."""
        return [failure for failure in self.failures if failure.name == rule]


def engine_failure(rule: str, message: str) -> Failure:
    """A failure of `rule`, cited from ENGINE_RULES."""
    return Failure(name=rule, message=message, citation=ENGINE_CITATIONS.get(rule, ""))

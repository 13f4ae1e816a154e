"""Invariants every recorded check history must keep, whatever went wrong around it."""

from __future__ import annotations

import itertools

from asyncplugin.engine import CallKind, CheckOutcome, CheckRecord

ANSWERED = frozenset(
    {CheckOutcome.RUNNING, CheckOutcome.SUCCEEDED, CheckOutcome.FAILED, CheckOutcome.CANCELLED}
)
ENDS = frozenset(
    {
        CheckOutcome.SUCCEEDED,
        CheckOutcome.FAILED,
        CheckOutcome.CANCELLED,
        CheckOutcome.PROTOCOL_VIOLATION,
        CheckOutcome.RPC_ERROR,
        CheckOutcome.DEADLINE_EXCEEDED,
        CheckOutcome.MAX_CHECKS_EXCEEDED,
    }
)


def history_problems(history: list[CheckRecord]) -> list[str]:
    """What is wrong with one task's history (empty when it is consistent).

    Answered calls (not cancel requests) have strictly increasing check numbers; the initiation
    is answered at most once and only first; at most one entry ends the task.
    """
    problems: list[str] = []
    calls = [e for e in history if e.kind in (CallKind.INITIATE, CallKind.CHECK)]
    numbers = [e.check_number for e in calls if e.outcome in ANSWERED]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        problems.append(f"answered check numbers do not increase: {numbers}")
    initiations = [e for e in calls if e.kind is CallKind.INITIATE and e.outcome in ANSWERED]
    if len(initiations) > 1:
        problems.append(f"{len(initiations)} answered initiations")
    ends = [e for e in history if e.kind is not CallKind.CANCEL and e.outcome in ENDS]
    if len(ends) > 1:
        problems.append(f"{len(ends)} entries end the task: {[str(e.outcome) for e in ends]}")
    return problems

"""What a store is asked for beyond one task: filters, the newest-first order, and page cursors.

Order: newest first by creation time, ties broken by task id (descending), so the order is total
and a page cursor (the last task's creation time and id) resumes exactly after it, even while
new tasks are added at the top.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from asyncplugin.protocol import TaskState

from ..records import TaskRecord

__all__ = ["TaskCursor", "TaskFilter", "after_cursor", "order_key"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFilter:
    """Which tasks a listing returns; every given criterion must hold.

    Attributes:
        states: only tasks in one of these states (None: any state).
        target: only tasks on this target (None: any).
        labels: only tasks carrying every one of these (key, value) labels.
        created_after: only tasks created at or after this time (epoch seconds).
        created_before: only tasks created before this time (epoch seconds).
    """

    states: frozenset[TaskState] | None = None
    target: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    created_after: float | None = None
    created_before: float | None = None

    @classmethod
    def of(
        cls,
        *,
        states: Collection[TaskState] | None = None,
        target: str | None = None,
        labels: Mapping[str, str] | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
    ) -> TaskFilter:
        """A filter from plain values (labels as a mapping; an empty state list means any)."""
        return cls(
            states=frozenset(states) if states else None,
            target=target or None,
            labels=tuple(sorted((labels or {}).items())),
            created_after=created_after,
            created_before=created_before,
        )

    def matches(self, record: TaskRecord) -> bool:
        """True when `record` passes every criterion."""
        if self.states is not None and record.state not in self.states:
            return False
        if self.target is not None and record.target != self.target:
            return False
        if self.created_after is not None and record.create_time < self.created_after:
            return False
        if self.created_before is not None and record.create_time >= self.created_before:
            return False
        if self.labels:
            have = dict(record.options.labels)
            if any(have.get(key) != value for key, value in self.labels):
                return False
        return True


@dataclass(frozen=True, slots=True)
class TaskCursor:
    """Where a page ended: the last task's creation time and id."""

    create_time: float
    task_id: str

    @classmethod
    def of(cls, record: TaskRecord) -> TaskCursor:
        """The cursor just past `record`."""
        return cls(record.create_time, record.task_id)


def order_key(record: TaskRecord) -> tuple[float, str]:
    """The sort key of the newest-first order (sort with reverse=True)."""
    return (record.create_time, record.task_id)


def after_cursor(record: TaskRecord, cursor: TaskCursor | None) -> bool:
    """True when `record` comes after `cursor` in the newest-first order."""
    if cursor is None:
        return True
    return order_key(record) < (cursor.create_time, cursor.task_id)

"""The task store's interface: the engine's durable truth about every task and every check.

The engine writes a task's new record and the check-history entries that explain it in ONE
`record` call, and only then schedules the next call: whatever is recorded is what a restarted
engine resumes from. Implementations must make each `record` call atomic.

Two kinds of store, told apart by the engine with `isinstance(store, SharedStore)`:

- a private store (MemoryStore, SqliteStore) belongs to ONE engine at a time (`claim`); the
  engine loads every unfinished task at start and schedules them all in its own heap;
- a shared store (PostgresStore) is used by several engine workers at once. Nothing is loaded at
  start: each worker leases the tasks that fall due within a short horizon (`lease_due`), runs
  them, and every write it makes about a task is fenced by the lease's token, so a worker that
  lost its lease (paused, partitioned) cannot overwrite what the next holder recorded.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
from collections.abc import Collection
from dataclasses import dataclass

from asyncplugin.protocol import TaskState

from ..errors import AmbiguousTaskId, TaskNotFound
from ..records import CheckRecord, TaskRecord
from .query import TaskCursor, TaskFilter, after_cursor, order_key

__all__ = ["Lease", "LeaseTerms", "SharedStore", "TaskStore"]


class TaskStore(abc.ABC):
    """Where tasks and their check histories live. One engine uses a store at a time."""

    async def open(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Prepares the store (creates or migrates a schema). Called by `Engine.start`."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Releases the store's resources (and the claim, if any). Called by `Engine.stop`."""

    async def claim(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Makes this the only engine driving the store until `close`. Called by `Engine.start`
        after `open`; readers that only inspect a store (`asyncplugin tasks`) do not claim it.

        Raises:
            StoreError: another engine holds the store.
        """

    async def announce(self, note: str) -> None:  # noqa: B027 - optional hook
        """Leaves a note for anyone refused the claim (for example the engine daemon's address,
        so a second engine on the store is told where to submit instead)."""

    @abc.abstractmethod
    async def create(self, record: TaskRecord) -> None:
        """Adds a new task.

        Raises:
            ValueError: a task with this id already exists.
        """

    @abc.abstractmethod
    async def record(self, record: TaskRecord | None, *checks: CheckRecord) -> None:
        """Atomically replaces a task's record and/or appends entries to check histories.

        What a task was created with (target, method, payload, idempotency key, options,
        create time, deadline) never changes; a store may keep those fields from `create` and
        write only the others (the PostgreSQL store does, so no check sends the payload again).
        """

    @abc.abstractmethod
    async def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, or None if there is no such task."""

    @abc.abstractmethod
    async def list(
        self, *, states: Collection[TaskState] | None = None, limit: int | None = None
    ) -> builtins.list[TaskRecord]:
        """Tasks in the given states (all if None), newest first, at most `limit`."""

    @abc.abstractmethod
    async def checks(self, task_id: str) -> builtins.list[CheckRecord]:
        """The task's check history, oldest first (empty for an unknown task)."""

    async def unfinished(self) -> builtins.list[TaskRecord]:
        """Every WAITING or RUNNING task, for an engine resuming after a restart."""
        return await self.list(states=(TaskState.WAITING, TaskState.RUNNING))

    # The methods below have correct but slow defaults built on `list` and `checks`, so a new
    # store works before it is tuned; the bundled stores override them with indexed queries.

    async def query(
        self, where: TaskFilter, *, limit: int, after: TaskCursor | None = None
    ) -> builtins.list[TaskRecord]:
        """Tasks passing `where`, newest first (creation time, then id), after `after`."""
        states = where.states if where.states is not None else None
        found = [
            record
            for record in await self.list(states=states)
            if where.matches(record) and after_cursor(record, after)
        ]
        found.sort(key=order_key, reverse=True)
        return found[:limit]

    async def find_ids(self, prefix: str, *, limit: int) -> builtins.list[str]:
        """Ids of tasks starting with `prefix`, sorted, at most `limit`."""
        ids = sorted(r.task_id for r in await self.list() if r.task_id.startswith(prefix))
        return ids[:limit]

    async def resolve(self, prefix: str) -> str:
        """The id of the one task whose id is `prefix` or starts with it.

        Raises:
            TaskNotFound: no task matches. AmbiguousTaskId: several do (up to 10 named).
        """
        if not prefix:
            raise TaskNotFound(prefix)
        if await self.get(prefix) is not None:
            return prefix
        ids = await self.find_ids(prefix, limit=11)
        if not ids:
            raise TaskNotFound(prefix)
        if len(ids) > 1:
            raise AmbiguousTaskId(prefix, ids[:10], more=len(ids) > 10)
        return ids[0]

    async def find_request(self, request_id: str) -> TaskRecord | None:
        """The task submitted with this request id, or None."""
        for record in await self.list():
            if record.options.request_id == request_id:
                return record
        return None

    async def checks_after(self, task_id: str, revision: int) -> builtins.list[CheckRecord]:
        """The task's history entries recorded after `revision`, oldest first."""
        return [check for check in await self.checks(task_id) if check.revision > revision]

    async def delete(self, task_id: str) -> bool:
        """Removes a task and its history; True if it was there. Engines delete only finished
        tasks (the caller checks)."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete tasks")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseTerms:
    """How a worker on a shared store leases its tasks.

    Attributes:
        lease_s: how long a lease lasts past the task's due time; best longer than the
            longest call (the policy's `check_timeout_s` plus a 2 s margin). Before each call
            the engine extends a lease that would not outlast it (`SharedStore.ensure_lease`),
            under the same fence, so a shorter lease costs a statement per call, never safety.
        horizon_s: tasks due within this time from now are leased and timed in the worker's
            own heap; tasks due later stay in the database.
        poll_interval_s: how often an idle worker looks for due work when no hint comes
            (a NOTIFY wakes it at once); at most `horizon_s`, so no due task waits for a poll.
        batch: the most tasks one lease statement takes.
    """

    lease_s: float = 30.0
    horizon_s: float = 2.0
    poll_interval_s: float = 1.0
    batch: int = 64

    def __post_init__(self) -> None:
        if not self.lease_s > 0:
            raise ValueError(f"LeaseTerms.lease_s must be > 0, got {self.lease_s}")
        if not self.poll_interval_s > 0:
            raise ValueError(f"LeaseTerms.poll_interval_s must be > 0, got {self.poll_interval_s}")
        if not self.horizon_s >= self.poll_interval_s:
            raise ValueError(
                f"LeaseTerms.horizon_s ({self.horizon_s}) must be >= poll_interval_s "
                f"({self.poll_interval_s}), or tasks would fall due between two polls"
            )
        if self.batch < 1:
            raise ValueError(f"LeaseTerms.batch must be >= 1, got {self.batch}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A task leased to this worker by `SharedStore.lease_due`.

    Attributes:
        record: the task's record as stored.
        due_in_s: how long from now its next call is due, measured on the database's clock
            (0 when it is already due); the worker times it with its own clock from here.
        cancel_requested: a worker was asked to cancel the task; run the cancel, not a check.
    """

    record: TaskRecord
    due_in_s: float
    cancel_requested: bool = False


class SharedStore(TaskStore):
    """A store several engine workers use at once, each leasing the tasks it runs.

    The contract, for any implementation:
      - `lease_due` gives a task to one worker at a time: a task whose lease has not expired is
        never given to another worker; every lease gets a token greater than the task's last;
      - `record` writes only while the caller's token (the pinned one, see `pin`, else the one
        it holds) is still the task's token; otherwise it raises LeaseLost and writes nothing.
        A task nobody holds is written only while no live lease exists. A record write of an
        unfinished task keeps the lease if its next call is due within the horizon and gives
        it back otherwise (`holds` tells which); a finished task's lease ends with its write;
      - `create` adds a task that nobody holds, due as recorded;
      - due times are decided on the store's clock, never a worker's;
      - `create` and `request_cancel` wake idle workers (`wait_for_work`) with a hint.
    """

    @property
    @abc.abstractmethod
    def terms(self) -> LeaseTerms:
        """This worker's lease terms."""

    @abc.abstractmethod
    async def lease_due(self, *, limit: int) -> builtins.list[Lease]:
        """Leases up to `limit` unfinished tasks due within the horizon and not leased by any
        live worker, earliest first."""

    @abc.abstractmethod
    def holds(self, task_id: str) -> bool:
        """True while this worker holds the task's lease (as far as it knows)."""

    @abc.abstractmethod
    def pin(self, task_id: str) -> contextlib.AbstractContextManager[None]:
        """Binds the writes about the task made inside the block (in this asyncio task) to the
        lease this worker holds now, so a step that outlived its lease cannot write under a
        newer lease this same worker took later.

        Raises:
            LeaseLost: this worker does not hold the task's lease.
        """

    @abc.abstractmethod
    async def ensure_lease(self, task_id: str, *, need_s: float) -> None:
        """Makes the lease last at least `need_s` more seconds, extending it under the fence
        when it would not (one round trip; none while enough is left).

        Raises:
            LeaseLost: another worker holds the task now.
        """

    @abc.abstractmethod
    async def take_over(self, task_id: str) -> Lease | None:
        """Leases an unfinished task to this worker whoever holds it, with a new token (the
        previous holder's writes are refused from then on), for a report the plugin sent to
        this worker (a completion, a progress update); `due_in_s` is at least what was left of
        the previous lease, so no call is sent while the previous holder's may still run.
        None if the task has ended."""

    @abc.abstractmethod
    async def release(self, task_ids: Collection[str]) -> None:
        """Gives leases back (fenced), so other workers may run the tasks at once."""

    @abc.abstractmethod
    async def request_cancel(self, task_id: str) -> bool:
        """Asks whichever worker holds the task (or leases it next) to cancel it, and makes it
        due now; False if the task is not unfinished."""

    @abc.abstractmethod
    async def cancel_requests(self) -> builtins.list[str]:
        """Tasks this worker holds whose cancel was requested."""

    @abc.abstractmethod
    async def wait_for_work(self, timeout_s: float) -> bool:
        """Waits until a hint says work was added or a cancel requested, at most `timeout_s`;
        True if a hint came."""

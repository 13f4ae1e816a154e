"""One step of one task: the call that is due, its outcome recorded, the next call scheduled.

The `Driver` is the engine loop's body (docs/architecture.md, "One status check, end to end"):
transport.call -> validate -> store.record -> schedule. The rule that makes restarts safe lives
here: every step records its outcome (the task's new record and the history entries explaining
it, in one atomic store write) BEFORE it schedules the next call, so the heap can always be
rebuilt from the store.

Three things are kept apart, each with its own policy:
  - the polling schedule (`PollingPolicy` via `next_interval`), advanced only by answers;
  - the transport retry of one call (`TransportRetryPolicy` via `retry_delay`): UNAVAILABLE and
    the call's own timeout, which keep the check number and are never plugin failures;
  - the overall deadline, checked before every call; a call already in flight when it passes
    may still finish the task. Giving up (deadline, max checks) sends the plugin one
    best-effort cancel request and records FAILED with its answer.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, Protocol

from asyncplugin.protocol import ProtocolViolation, TaskState, decode_response, limits
from asyncplugin.protocol.text import truncate
from asyncplugin.v1 import task_pb2

from . import errors
from .clock import Clock
from .completion import CompletionIssuer
from .conversation import (
    Answer,
    build_request,
    history_entry,
    read_answer,
    scheduled,
    violation_error,
)
from .errors import EngineCode
from .policy import PollingPolicy, TransportRetryPolicy, next_interval, retry_delay
from .records import CallKind, CheckOutcome, CheckRecord, TaskRecord, replace_task
from .transport import Transport, TransportError

__all__ = ["Commit", "Driver"]

_log = logging.getLogger(__name__)


class Commit(Protocol):
    """`commit(record_or_None, *checks)`: store atomically, update the cache, notify listeners."""

    def __call__(
        self, record: TaskRecord | None, /, *checks: CheckRecord, revised: bool = False
    ) -> Awaitable[None]:
        """Records the task's new record (None: history entries only) and its entries.

        With `revised`, the record already carries its next revision (the stored one + 1), so
        it is not copied again to set it.
        """
        ...


GiveUpCode = Literal[EngineCode.DEADLINE_EXCEEDED, EngineCode.MAX_CHECKS_EXCEEDED]
"""The engine codes of a task the engine gives up on."""

_GIVE_UP_OUTCOMES: Final[Mapping[GiveUpCode, CheckOutcome]] = {
    EngineCode.DEADLINE_EXCEEDED: CheckOutcome.DEADLINE_EXCEEDED,
    EngineCode.MAX_CHECKS_EXCEEDED: CheckOutcome.MAX_CHECKS_EXCEEDED,
}


class Driver:
    """Runs the due call of a task and records what came of it.

    The engine calls `step` from a scheduler worker, and `cancel` from `Engine.cancel`, always
    holding the task's lock, so one task never has two calls in flight.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        transport: Transport,
        rng: random.Random,
        policy: PollingPolicy,
        retry_policy: TransportRetryPolicy,
        engine_name: str,
        commit: Commit,
        schedule: Callable[[str, float], None],
        completion: CompletionIssuer | None = None,
        before_call: Callable[[TaskRecord], Awaitable[None]] | None = None,
    ) -> None:
        self._clock = clock
        self._transport = transport
        self._rng = rng
        self._policy = policy
        self._retry_policy = retry_policy
        self._engine_name = engine_name
        self._commit = commit
        self._schedule = schedule
        self._completion = completion
        self._before_call = before_call

    def policy_for(self, record: TaskRecord) -> PollingPolicy:
        """The task's polling policy: its own, or the engine's."""
        return record.options.policy or self._policy

    def retry_policy_for(self, record: TaskRecord) -> TransportRetryPolicy:
        """The task's transport retry policy: its own, or the engine's."""
        return record.options.retry_policy or self._retry_policy

    async def step(self, record: TaskRecord) -> None:
        """Sends the task's due call (initiation or status check) and records the outcome."""
        now = self._clock.now()
        if record.deadline is not None and now >= record.deadline:
            await self.give_up(
                record,
                EngineCode.DEADLINE_EXCEEDED,
                f"the task did not finish by its deadline {_iso(record.deadline)}",
            )
            return
        kind = CallKind.INITIATE if record.state is TaskState.WAITING else CallKind.CHECK
        number = 0 if kind is CallKind.INITIATE else record.check_count + 1
        call = _Call(record, kind, number, started=now)
        try:
            raw = await self._call(record, kind, number)
        except TransportError as err:
            await self._transport_failed(call, err)
            return
        finished = self._clock.now()
        try:
            response = decode_response(raw)
        except ProtocolViolation as violation:
            await self._violated(call, violation, finished)
            return
        await self._answered(call, read_answer(response), finished)

    async def _violated(self, call: _Call, violation: ProtocolViolation, finished: float) -> None:
        """The answer broke a protocol rule: this task (only) fails PROTOCOL_VIOLATION."""
        record = call.record
        _log.warning("task %s: %s", record.task_id, violation)
        error = violation_error(violation, target=record.target, method=record.method)
        failed = _finish(record, TaskState.FAILED, finished, error=error)
        entry = call.entry(finished, CheckOutcome.PROTOCOL_VIOLATION, str(violation))
        await self._commit(failed, entry)

    async def _answered(self, call: _Call, answer: Answer, finished: float) -> None:
        """A valid answer: record the end, or record RUNNING and schedule the next check."""
        record, number = call.record, call.number
        status = answer.status or record.status
        start_time = call.started if call.kind is CallKind.INITIATE else record.start_time
        if answer.state is not TaskState.RUNNING:
            progress = dataclasses.replace(
                record,
                status=status,
                check_count=number,
                retries=0,
                start_time=start_time,
                update_time=finished,
            )
            done = _finish(
                progress, answer.state, finished, result=answer.result, error=answer.error
            )
            await self._commit(done, call.entry(finished, answer.outcome, answer.message))
            return
        policy = self.policy_for(record)
        if policy.max_checks is not None and number >= policy.max_checks:
            running = dataclasses.replace(
                record,
                state=TaskState.RUNNING,
                status=status,
                check_count=number,
                retries=0,
                start_time=start_time,
                update_time=finished,
            )
            await self.give_up(
                running,
                EngineCode.MAX_CHECKS_EXCEEDED,
                f"the plugin was still RUNNING after {number} status checks "
                f"(max_checks {policy.max_checks})",
                call.entry(finished, answer.outcome, answer.message),
            )
            return
        interval, reason = next_interval(number + 1, policy, self._rng, answer.hint_s)
        due, interval, reason = _cut_to_deadline(finished, interval, reason, record.deadline)
        # The hot path (every RUNNING answer): one copy of the record, one history entry, both
        # already carrying the revision the commit gives them (so it copies neither again).
        revision = record.revision + 1
        running = replace_task(
            record,
            state=TaskState.RUNNING,
            status=status,
            check_count=number,
            retries=0,
            start_time=start_time,
            update_time=finished,
            next_check_time=due,
            revision=revision,
        )
        entry = history_entry(
            record,
            kind=call.kind,
            check_number=number,
            started=call.started,
            finished=finished,
            outcome=answer.outcome,
            message=answer.message,
            interval_s=interval,
            reason=reason,
            next_check_time=due,
            revision=revision,
        )
        await self._commit(running, entry, revised=True)
        self._schedule(record.task_id, due)

    async def give_up(
        self, record: TaskRecord, code: GiveUpCode, message: str, *preceding: CheckRecord
    ) -> None:
        """Fails the task with an engine error, telling the plugin with a best-effort cancel.

        The cancel request goes first and the failure is recorded with its answer in one write,
        so a waiter woken by the FAILED state finds the whole history. A crash in between
        leaves the task as it was: the restarted engine gives up again (and cancels again).
        """
        now = self._clock.now()
        error = errors.engine_error(
            code,
            message,
            suggestion="Raise the task's deadline_s or the policy's max_checks if the work "
            "legitimately takes longer.",
            metadata={"check_count": str(record.check_count)},
        )
        failed = _finish(record, TaskState.FAILED, now, error=error.SerializeToString())
        entry = _Call(record, CallKind.GIVE_UP, record.check_count, started=now).entry(
            now, _GIVE_UP_OUTCOMES[code], message
        )
        cancel_entry = await self.cancel_request(failed)
        await self._commit(failed, *preceding, entry, cancel_entry)

    async def cancel(self, record: TaskRecord) -> TaskRecord:
        """Records the task CANCELLED, then sends the plugin a best-effort cancel request.

        CANCELLED is recorded first so the caller's decision survives a crash; the cancel
        request's answer is appended to the history afterwards.
        """
        now = self._clock.now()
        cancelled = _finish(record, TaskState.CANCELLED, now)
        await self._commit(cancelled)
        await self._commit(None, await self.cancel_request(cancelled))
        return cancelled

    async def cancel_request(self, record: TaskRecord) -> CheckRecord:
        """Sends one status check with `cancel_requested = true`; returns its history entry.

        Best effort: no retries, and the answer never changes the task's state. Only sent when
        the plugin has answered RUNNING at least once (a cancel request must carry the plugin's
        `remote_status_input`); otherwise the entry says why nothing was sent.
        """
        now = self._clock.now()
        number = record.check_count + 1
        call = _Call(record, CallKind.CANCEL, number, started=now)
        status = task_pb2.Task.FromString(record.status or b"")
        if not status.HasField("remote_status_input"):
            return call.entry(
                now,
                CheckOutcome.CANCELLED,
                "no cancel request sent: the plugin had not answered RUNNING yet",
            )
        outcome, message, code = CheckOutcome.RPC_ERROR, "", ""
        try:
            raw = await self._call(record, CallKind.CANCEL, number)
            answer = read_answer(decode_response(raw, cancel_requested=True))
            outcome, message = answer.outcome, answer.message or "cancel request answered"
        except TransportError as err:
            code, message = err.code_name, f"{err.error.message}: {err.error.internal_message}"
        except ProtocolViolation as violation:
            outcome, message = CheckOutcome.PROTOCOL_VIOLATION, str(violation)
        except errors.LeaseLost:
            raise  # another worker runs the task now: this step is over
        except Exception as err:  # best effort: never let the cancel request fail the caller
            _log.exception("task %s: cancel request failed", record.task_id)
            message = f"{type(err).__name__}: {err}"
        return call.entry(self._clock.now(), outcome, message, grpc_code=code)

    async def fail_internal(self, record: TaskRecord, err: Exception) -> None:
        """Fails the task with ENGINE_INTERNAL after an unexpected error (an engine bug)."""
        error = errors.engine_error(
            EngineCode.ENGINE_INTERNAL,
            "the engine failed while handling this task",
            internal_message=f"{type(err).__name__}: {err}",
        )
        failed = _finish(
            record, TaskState.FAILED, self._clock.now(), error=error.SerializeToString()
        )
        try:
            await self._commit(failed)
        except Exception:
            _log.exception("task %s: could not record the engine error", record.task_id)

    async def _call(self, record: TaskRecord, kind: CallKind, number: int) -> bytes:
        if self._before_call is not None:
            await self._before_call(record)  # a shared store: the lease must outlast the call
        policy = self.policy_for(record)
        address, token = "", ""
        if self._completion is not None:
            address = self._completion.address
            token = self._completion.token_for(
                record.task_id, now=self._clock.now(), deadline=record.deadline
            )
        request = build_request(
            record,
            kind=kind,
            check_number=number,
            max_retries=self.retry_policy_for(record).max_retries,
            engine_name=self._engine_name,
            engine_address=address,
            completion_token=token,
        )
        return await self._transport.call(
            record.target,
            record.method,
            request,
            timeout_s=policy.check_timeout_s,
            metadata=record.options.call_metadata(),
        )

    async def _transport_failed(self, call: _Call, err: TransportError) -> None:
        """The call failed in transport: retry it later, or fail the task with the error."""
        record = call.record
        finished = self._clock.now()
        retry_policy = self.retry_policy_for(record)
        detail = err.error.message
        if err.error.internal_message:
            detail += f": {err.error.internal_message}"
        entry = call.entry(finished, CheckOutcome.TRANSPORT_RETRY, detail, grpc_code=err.code_name)
        if err.retryable and record.retries < retry_policy.max_retries:
            retries = record.retries + 1
            delay, reason = retry_delay(retries, retry_policy, self._rng)
            due, delay, reason = _cut_to_deadline(finished, delay, reason, record.deadline)
            updated = dataclasses.replace(
                record, retries=retries, next_check_time=due, update_time=finished
            )
            await self._commit(updated, scheduled(entry, interval_s=delay, reason=reason, due=due))
            self._schedule(record.task_id, due)
            return
        error = err.error
        if err.retryable:
            error.message = truncate(
                f"{error.message} (gave up after {record.retries} transport retries)",
                limits.TEXT_MAX_BYTES,
            )
            error.metadata["retries"] = str(record.retries)
        failed = _finish(record, TaskState.FAILED, finished, error=error.SerializeToString())
        await self._commit(failed, dataclasses.replace(entry, outcome=CheckOutcome.RPC_ERROR))


@dataclass(frozen=True, slots=True)
class _Call:
    """One call of a task (or the engine giving up on it): which, its number, when it began."""

    record: TaskRecord
    kind: CallKind
    number: int
    started: float

    def entry(
        self, finished: float, outcome: CheckOutcome, message: str = "", *, grpc_code: str = ""
    ) -> CheckRecord:
        """The history entry of this call, ended at `finished` with `outcome`."""
        return history_entry(
            self.record,
            kind=self.kind,
            check_number=self.number,
            started=self.started,
            finished=finished,
            outcome=outcome,
            message=message,
            grpc_code=grpc_code,
        )


def _finish(
    record: TaskRecord,
    state: TaskState,
    now: float,
    *,
    result: bytes | None = None,
    error: bytes | None = None,
) -> TaskRecord:
    """The record moved to a terminal state at `now`, with the result or error if given."""
    return dataclasses.replace(
        record,
        state=state,
        end_time=now,
        update_time=now,
        next_check_time=None,
        result=record.result if result is None else result,
        error=record.error if error is None else error,
    )


def _cut_to_deadline(
    now: float, interval: float, reason: str, deadline: float | None
) -> tuple[float, float, str]:
    """(due time, interval, reason), with the interval cut so it ends at the deadline at most."""
    due = now + interval
    if deadline is None or due <= deadline:
        return due, interval, reason
    left = max(0.0, deadline - now)
    return deadline, left, f"{reason}; cut to the deadline in {left:.3g}s"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")

"""The conformance kit: every case driven through the real reference engine, judged, reported.

    report = await run_kit("127.0.0.1:50051")
    print(report.passed, [(r.case.name, r.detail) for r in report.results])

One Engine (SystemClock, in-memory store, short polling intervals) runs every case concurrently
against the target. The engine's transport is wrapped by `RecordingTransport`, which keeps each
request sent and each raw answer received, so the judge sees every answer the plugin gave,
including ones the engine refused as protocol violations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from google.protobuf import message as pb_message

from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.engine import (
    CallKind,
    CheckOutcome,
    Engine,
    GrpcTransport,
    MemoryStore,
    SystemClock,
    TaskOptions,
    TaskUpdate,
    Transport,
    TransportError,
)
from asyncplugin.engine.transport import Metadata
from asyncplugin.protocol import TaskState
from asyncplugin.protocol.methods import GENERIC_METHOD
from asyncplugin.v1 import plugin_pb2

from .cases import CASES, FAST_POLICY, FAST_RETRY, Case, Mode
from .findings import Exchange, Failure
from .judge import Driven, judge_driven
from .probe import run_probe

__all__ = ["CaseResult", "KitReport", "RecordingTransport", "run_kit"]

DEFAULT_CASE_TIMEOUT_S = 30.0
"""How long the kit waits for one case before failing it with TIMEOUT."""


class RecordingTransport:
    """A `Transport` that keeps every exchange, by task id, and passes calls on unchanged."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self._exchanges: dict[str, list[Exchange]] = {}

    async def call(
        self,
        target: str,
        method: str,
        request: bytes,
        *,
        timeout_s: float,
        metadata: Metadata = (),
    ) -> bytes:
        """Sends the call through the inner transport and records request and outcome."""
        sent = plugin_pb2.InvokeRequest()
        with contextlib.suppress(pb_message.DecodeError):
            sent.ParseFromString(request)
        started = time.time()
        try:
            answer = await self.inner.call(
                target, method, request, timeout_s=timeout_s, metadata=metadata
            )
        except TransportError as err:
            detail = err.error.message
            if err.error.internal_message:
                detail += f" ({err.error.internal_message})"
            self._add(
                Exchange(
                    request=sent,
                    response=None,
                    grpc_code=err.code_name,
                    error_message=detail,
                    started=started,
                    finished=time.time(),
                )
            )
            raise
        self._add(Exchange(request=sent, response=answer, started=started, finished=time.time()))
        return answer

    def _add(self, exchange: Exchange) -> None:
        self._exchanges.setdefault(exchange.task_id, []).append(exchange)

    def exchanges(self, task_id: str) -> list[Exchange]:
        """Every exchange of one task so far, oldest first."""
        return list(self._exchanges.get(task_id, ()))

    async def close(self) -> None:
        """Closes the inner transport."""
        await self.inner.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """The verdict on one case.

    Attributes:
        case: the case.
        failures: every named failure; empty when the case passed.
        elapsed_s: how long the case took (wall clock).
        summary: what happened, in a few words (shown when the case passed).
        implementation: the ScenarioResult.implementation the plugin reported, if any.
    """

    case: Case
    failures: tuple[Failure, ...]
    elapsed_s: float
    summary: str = ""
    implementation: str = ""

    @property
    def passed(self) -> bool:
        """True when there is no failure."""
        return not self.failures

    @property
    def detail(self) -> str:
        """The failures, one after another; the summary when the case passed."""
        if self.failures:
            return "; ".join(str(failure) for failure in self.failures)
        return self.summary


@dataclass(frozen=True, slots=True, kw_only=True)
class KitReport:
    """The verdict on a plugin: one result per case."""

    target: str
    method: str
    results: tuple[CaseResult, ...]
    elapsed_s: float
    implementations: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """True when every case passed."""
        return all(result.passed for result in self.results)

    @property
    def failed(self) -> list[CaseResult]:
        """The results of the cases that failed."""
        return [result for result in self.results if not result.passed]


async def run_kit(
    target: str,
    *,
    method: str = GENERIC_METHOD,
    cases: Sequence[Case] = CASES,
    case_timeout_s: float = DEFAULT_CASE_TIMEOUT_S,
    transport: Transport | None = None,
    bearer_token: str | None = None,
) -> KitReport:
    """Drives every case against the plugin at `target` through the reference engine.

    Args:
        target: the plugin's address, "host:port".
        method: the envelope method the conformance plugin serves.
        cases: the cases to run (default: all, in catalogue order).
        case_timeout_s: how long to wait for each case (they run concurrently).
        transport: how to reach the plugin (default: a plaintext GrpcTransport, closed at the end).
        bearer_token: sent as `authorization: Bearer <token>` on every call.
    """
    started = time.monotonic()
    owned = transport is None
    recorder = RecordingTransport(transport if transport is not None else GrpcTransport())
    engine = Engine(
        store=MemoryStore(),
        clock=SystemClock(),
        policy=FAST_POLICY,
        retry_policy=FAST_RETRY,
        transport=recorder,
        shutdown_grace_s=0.5,
    )
    metadata: Metadata = (("authorization", f"Bearer {bearer_token}"),) if bearer_token else ()
    try:
        with _quiet("asyncplugin.engine"):
            async with engine:
                results = await asyncio.gather(
                    *(
                        _run_case(engine, recorder, target, method, case, case_timeout_s, metadata)
                        for case in cases
                    )
                )
    finally:
        if owned:
            await recorder.close()
    implementations = sorted({r.implementation for r in results if r.implementation})
    return KitReport(
        target=target,
        method=method,
        results=tuple(results),
        elapsed_s=time.monotonic() - started,
        implementations=tuple(implementations),
    )


async def _run_case(
    engine: Engine,
    recorder: RecordingTransport,
    target: str,
    method: str,
    case: Case,
    timeout_s: float,
    metadata: Metadata,
) -> CaseResult:
    started = time.monotonic()
    if case.mode is Mode.PROBE:
        failures, summary = await run_probe(
            recorder, target, method, case.scenario, timeout_s=timeout_s, metadata=metadata
        )
        return CaseResult(
            case=case,
            failures=tuple(failures),
            elapsed_s=time.monotonic() - started,
            summary=summary,
        )
    options = TaskOptions(
        policy=case.policy,
        retry_policy=case.retry_policy,
        plugin_id="conformance",
        metadata=tuple(metadata),
    )
    task_id = await engine.submit(target, method=method, payload=case.scenario, options=options)
    # Listening starts before the first await after submit: no check can be missed.
    counted = _RunningChecks(engine, task_id, case.cancel_after_checks)
    timed_out: float | None = None
    try:
        async with asyncio.timeout(timeout_s):
            if case.mode is Mode.CANCEL and await counted.reached():
                await engine.cancel(task_id)
            record = await engine.wait(task_id)
    except TimeoutError:
        timed_out = timeout_s
        record = await engine.get(task_id)
        if not record.is_terminal:
            await engine.cancel(task_id)
    finally:
        counted.close()
    driven = Driven(
        scenario=case.scenario,
        policy=case.policy,
        record=record,
        checks=await engine.checks(task_id),
        exchanges=recorder.exchanges(task_id),
        cancel_after_checks=case.cancel_after_checks,
        timed_out_s=timed_out,
    )
    return CaseResult(
        case=case,
        failures=tuple(judge_driven(driven)),
        elapsed_s=time.monotonic() - started,
        summary=_summary(driven),
        implementation=_implementation(driven),
    )


class _RunningChecks:
    """Counts a task's status checks answered RUNNING, as the engine records them."""

    def __init__(self, engine: Engine, task_id: str, wanted: int) -> None:
        self._task_id = task_id
        self._wanted = wanted
        self._seen = 0
        self._done = asyncio.Event()
        self._ended = False
        self._remove = engine.add_listener(self._on_change)

    def _on_change(self, update: TaskUpdate) -> None:
        if update.record.task_id != self._task_id:
            return
        self._seen += sum(
            1
            for check in update.checks
            if check.kind is CallKind.CHECK and check.outcome is CheckOutcome.RUNNING
        )
        self._ended = self._ended or update.record.is_terminal
        if self._ended or self._seen >= self._wanted:
            self._done.set()

    async def reached(self) -> bool:
        """Waits for `wanted` RUNNING checks (True) or the task's end (False)."""
        await self._done.wait()
        return self._seen >= self._wanted and not self._ended

    def close(self) -> None:
        """Stops listening."""
        self._remove()


def _summary(driven: Driven) -> str:
    record = driven.record
    text = (
        f"{record.state.name} after {_count(record.check_count, 'status check')} "
        f"({_count(len(driven.exchanges), 'call')}"
    )
    retries = sum(1 for check in driven.checks if check.outcome is CheckOutcome.TRANSPORT_RETRY)
    if retries:
        text += f", {_count(retries, 'transport retry')}"
    text += ")"
    if record.error is not None and record.state is TaskState.FAILED:
        text += f"; error {record.error_proto().code} recorded"
    return text


def _count(number: int, noun: str) -> str:
    if number == 1:
        return f"1 {noun}"
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{number} {plural}"


def _implementation(driven: Driven) -> str:
    if driven.record.result is None:
        return ""
    try:
        result = conformance_pb2.ScenarioResult.FromString(driven.record.result)
    except pb_message.DecodeError:
        return ""
    return result.implementation


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Raises a logger's level to ERROR for the block: the kit reports the protocol violations
    the engine would log as warnings, by name, in its own verdict."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)

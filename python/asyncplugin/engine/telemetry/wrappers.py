"""The transport and store wrappers that tell the telemetry about each call and time each write."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from ..records import CheckRecord, TaskRecord
from ..transport import Metadata, Transport

if TYPE_CHECKING:
    from ..metrics import EngineMetrics
    from .core import EngineTelemetry


class StoreWriter(Protocol):
    """The two store writes the engine times: a new task, and a recorded change."""

    async def create(self, record: TaskRecord) -> None: ...

    async def record(self, record: TaskRecord | None, *checks: CheckRecord) -> None: ...


class _ObservedTransport:
    """A Transport that tells the telemetry about each call.

    Only `call` and `close`, the `Transport` protocol: no `__getattr__` forwarding to the
    wrapped transport, which would route every attribute read of this object through a Python
    hook (the engine's driver reads `call` on each status check).
    """

    __slots__ = ("_inner", "_telemetry")

    def __init__(self, inner: Transport, telemetry: EngineTelemetry) -> None:
        self._inner = inner
        self._telemetry = telemetry

    async def call(
        self,
        target: str,
        method: str,
        request: bytes,
        *,
        timeout_s: float,
        metadata: Metadata = (),
    ) -> bytes:
        telemetry = self._telemetry
        call, metadata = telemetry.call_started(target, method, request, metadata)
        if call is None:
            return await self._inner.call(
                target, method, request, timeout_s=timeout_s, metadata=metadata
            )
        started = time.perf_counter()
        try:
            answer = await self._inner.call(
                target, method, request, timeout_s=timeout_s, metadata=metadata
            )
        except BaseException as err:
            telemetry.call_finished(call, time.perf_counter() - started, err)
            raise
        telemetry.call_finished(call, time.perf_counter() - started, None)
        return answer

    async def close(self) -> None:
        await self._inner.close()


class _TimedWrites:
    """Store writes, timed into the store-write histogram."""

    __slots__ = ("_create", "_observe", "_record", "_store")

    def __init__(
        self,
        store: StoreWriter,
        metrics: EngineMetrics,
        create_row: list[float],
        record_row: list[float],
    ) -> None:
        self._store = store
        self._observe = metrics.store_writes.observe
        self._create = create_row
        self._record = record_row

    async def create(self, record: TaskRecord) -> None:
        started = time.perf_counter()
        try:
            await self._store.create(record)
        finally:
            self._observe(self._create, time.perf_counter() - started)

    async def record(self, record: TaskRecord | None, *checks: CheckRecord) -> None:
        started = time.perf_counter()
        try:
            await self._store.record(record, *checks)
        finally:
            self._observe(self._record, time.perf_counter() - started)

"""A thin synchronous facade over `Engine`, for scripts and code without an event loop.

Design: the facade runs ONE event loop in a background thread for its whole life, and each method
submits a coroutine to it and blocks on the result. `asyncio.run` per call would not do: the
engine's scheduler must keep polling between calls, and grpc.aio channels belong to the loop
that created them. Everything async (store, transport, clock) is created and used in that one
thread, so the Engine itself needs no locking.

    with SyncEngine(store=SqliteStore("tasks.db")) as engine:
        record = engine.invoke("127.0.0.1:50051", payload={"text": "hi"})
"""

from __future__ import annotations

import asyncio
import builtins
import random
import threading
from collections.abc import Collection, Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from asyncplugin.protocol import TaskState
from asyncplugin.protocol.methods import GENERIC_METHOD

from .clock import Clock
from .completion import CompletionIssuer
from .engine import Engine, Payload
from .notify import ChangeHook
from .policy import PollingPolicy, TransportRetryPolicy
from .records import CheckRecord, TaskOptions, TaskRecord
from .store.base import TaskStore
from .telemetry import EngineTelemetry
from .transport import Transport

__all__ = ["SyncEngine"]

_T = TypeVar("_T")


class SyncEngine:
    """`Engine` with blocking methods; the engine runs in its own thread and event loop.

    Takes the same keyword arguments as `Engine` (see there). `on_change` hooks run in the
    engine's thread. Use as a context manager, or call `start()` and `close()`.
    """

    def __init__(
        self,
        *,
        store: TaskStore | None = None,
        clock: Clock | None = None,
        policy: PollingPolicy | None = None,
        retry_policy: TransportRetryPolicy | None = None,
        max_concurrent_rpcs: int = 64,
        max_concurrent_rpcs_per_target: int | None = None,
        transport: Transport | None = None,
        rng: random.Random | None = None,
        on_change: ChangeHook | None = None,
        shutdown_grace_s: float = 5.0,
        telemetry: EngineTelemetry | None = None,
        completion: CompletionIssuer | None = None,
    ) -> None:
        def make_engine() -> Engine:
            return Engine(
                store=store,
                clock=clock,
                policy=policy,
                retry_policy=retry_policy,
                max_concurrent_rpcs=max_concurrent_rpcs,
                max_concurrent_rpcs_per_target=max_concurrent_rpcs_per_target,
                transport=transport,
                rng=rng,
                on_change=on_change,
                shutdown_grace_s=shutdown_grace_s,
                telemetry=telemetry,
                completion=completion,
            )

        self._make_engine = make_engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None

    def start(self) -> None:
        """Starts the engine's thread and loop, and the engine in it."""
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="asyncplugin-engine", daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread

        async def make() -> Engine:
            engine = self._make_engine()  # in the engine's loop: its objects belong there
            await engine.start()
            return engine

        try:
            self._engine = self._run(make())
        except BaseException:
            self._shutdown_loop()
            raise

    def close(self) -> None:
        """Stops the engine, then its loop and thread."""
        if self._thread is None:
            return
        try:
            if self._engine is not None:
                self._run(self._engine.stop())
        finally:
            self._engine = None
            self._shutdown_loop()

    def __enter__(self) -> SyncEngine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The asyncio Engine underneath (use it only from the engine's loop)."""
        if self._engine is None:
            raise RuntimeError("SyncEngine is not started")
        return self._engine

    def submit(
        self,
        target: str,
        *,
        method: str = GENERIC_METHOD,
        payload: Payload = b"",
        options: TaskOptions | None = None,
    ) -> str:
        """See `Engine.submit`."""
        return self._run(
            self.engine.submit(target, method=method, payload=payload, options=options)
        )

    def get(self, task_id: str) -> TaskRecord:
        """See `Engine.get`."""
        return self._run(self.engine.get(task_id))

    def wait(self, task_id: str, *, timeout_s: float | None = None) -> TaskRecord:
        """See `Engine.wait`."""
        return self._run(self.engine.wait(task_id, timeout_s=timeout_s))

    def cancel(self, task_id: str) -> TaskRecord:
        """See `Engine.cancel`."""
        return self._run(self.engine.cancel(task_id))

    def list(
        self,
        *,
        state: TaskState | Collection[TaskState] | None = None,
        limit: int | None = 100,
    ) -> builtins.list[TaskRecord]:
        """See `Engine.list`."""
        return self._run(self.engine.list(state=state, limit=limit))

    def checks(self, task_id: str) -> builtins.list[CheckRecord]:
        """See `Engine.checks`."""
        return self._run(self.engine.checks(task_id))

    def invoke(
        self,
        target: str,
        *,
        method: str = GENERIC_METHOD,
        payload: Payload = b"",
        options: TaskOptions | None = None,
        timeout_s: float | None = None,
    ) -> TaskRecord:
        """See `Engine.invoke`."""
        return self._run(
            self.engine.invoke(
                target, method=method, payload=payload, options=options, timeout_s=timeout_s
            )
        )

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("SyncEngine is not started")
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

"""Test a plugin through the real engine, in-process, on a fake clock.

    from asyncplugin.testing import PluginHarness

    async def test_transcribes_after_a_few_checks() -> None:
        async with PluginHarness(lambda clock: Transcriber(FakeRemote(now=clock.now))) as h:
            result = await h.run(TranscribeInput(audio_url="https://example.com/a.wav"))
        assert result.state is TaskState.SUCCEEDED
        assert result.data.word_count > 0
        assert result.intervals == [...]          # the schedule the engine followed

The harness serves the plugin on 127.0.0.1:0 (a real grpc.aio server, real stubs), runs the
reference engine on a FakeClock (an hour of backoff takes milliseconds) with a seeded jitter
source, and returns the final task, its check history and every answer the plugin gave. Give
the plugin the harness's clock (`lambda clock: ...`) when its remote work should follow
simulated time. For pytest, wrap it in a fixture of your own:

    @pytest.fixture
    async def harness():
        async with PluginHarness(MyPlugin()) as h:
            yield h
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from .engine import (
    CheckRecord,
    Engine,
    FakeClock,
    MemoryStore,
    PollingPolicy,
    TaskOptions,
    TaskRecord,
    TaskStore,
    TaskUpdate,
)
from .plugin import AsyncPlugin, PluginServer, as_plugin
from .protocol import PluginError, Task, TaskState, decode_payload

__all__ = ["DriveResult", "PluginHarness"]

PluginFactory = Callable[[FakeClock], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class DriveResult:
    """What happened to one task driven through the engine.

    Attributes:
        record: the engine's final record of the task.
        checks: its check history (initiation, status checks, cancel, give-up), oldest first.
        answers: every Task the plugin answered with (RUNNING ones with their progress and
            remote_status_input), oldest first.
        data: the result decoded into the plugin's output type; None unless SUCCEEDED.
    """

    record: TaskRecord
    checks: list[CheckRecord]
    answers: list[Task] = field(default_factory=list)
    data: Any = None

    @property
    def state(self) -> TaskState:
        """The task's final state."""
        return self.record.state

    @property
    def error(self) -> PluginError | None:
        """The error envelope of a FAILED task."""
        return self.record.error_envelope

    @property
    def intervals(self) -> list[float]:
        """The intervals the engine chose between calls, in order (seconds)."""
        return [check.interval_s for check in self.checks if check.interval_s is not None]

    @property
    def check_count(self) -> int:
        """How many status checks the engine sent."""
        return self.record.check_count


class PluginHarness:
    """Serves a plugin in-process and drives it through the reference engine on a fake clock.

    Args:
        plugin: the plugin, or a factory given the harness's FakeClock. Besides an AsyncPlugin,
            any object with a `run(request)` method is served (see `asyncplugin.plugin.as_plugin`),
            so a Steamship-style plugin runs as `PluginHarness(SomePlugin())`.
        policy: the engine's polling policy (default: the engine's defaults).
        seed: the jitter seed, so interval sequences are reproducible.
        store: the task store (default: in memory).
        clock: the FakeClock to use (default: a new one).
    """

    def __init__(
        self,
        plugin: AsyncPlugin[Any, Any] | PluginFactory | Any,
        *,
        policy: PollingPolicy | None = None,
        seed: int = 0,
        store: TaskStore | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.clock = clock if clock is not None else FakeClock()
        # An instance with `run` is the plugin; anything else callable (a class or a function)
        # is a factory given the clock, as before.
        runnable = not isinstance(plugin, type) and callable(getattr(plugin, "run", None))
        made = plugin if isinstance(plugin, AsyncPlugin) or runnable else plugin(self.clock)
        self.plugin = as_plugin(made)
        self._server = PluginServer(self.plugin, host="127.0.0.1", port=0)
        self.engine = Engine(
            store=store if store is not None else MemoryStore(),
            clock=self.clock,
            policy=policy,
            rng=random.Random(seed),
            on_change=self._on_change,
        )
        self._answers: dict[str, list[Task]] = {}
        self._last_status: dict[str, bytes | None] = {}
        self.target = ""

    async def __aenter__(self) -> PluginHarness:
        port = await self._server.start()
        self.target = f"127.0.0.1:{port}"
        await self.engine.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.engine.stop()
        await self._server.stop(0)

    def _on_change(self, update: TaskUpdate) -> None:
        record = update.record
        if record.status is not None and record.status != self._last_status.get(record.task_id):
            self._last_status[record.task_id] = record.status
            task = record.task
            if task is not None:
                self._answers.setdefault(record.task_id, []).append(task)

    async def submit(self, payload: Any, *, options: TaskOptions | None = None) -> str:
        """Submits a task to the plugin (its own RPC method) and returns the task id."""
        return await self.engine.submit(
            self.target, method=self.plugin.rpc_method, payload=payload, options=options
        )

    async def result(self, task_id: str) -> DriveResult:
        """Waits for the task to end and gathers its record, history and answers."""
        record = await self.engine.wait(task_id)
        data = None
        if record.state is TaskState.SUCCEEDED and record.result is not None:
            data = decode_payload(record.result, self.plugin.output_type)
        return DriveResult(
            record=record,
            checks=await self.engine.checks(task_id),
            answers=list(self._answers.get(task_id, [])),
            data=data,
        )

    async def run(
        self,
        payload: Any,
        *,
        options: TaskOptions | None = None,
        cancel_after_s: float | None = None,
    ) -> DriveResult:
        """Submits one task and drives it to the end (optionally cancelling it after a while)."""
        task_id = await self.submit(payload, options=options)
        if cancel_after_s is not None:
            await self.clock.sleep_until(self.clock.now() + cancel_after_s)
            if not (await self.engine.get(task_id)).is_terminal:
                await self.engine.cancel(task_id)
        return await self.result(task_id)

    async def run_many(self, payloads: list[Any]) -> list[DriveResult]:
        """Submits every payload at once and drives them all to the end concurrently."""
        ids = [await self.submit(payload) for payload in payloads]
        return list(await asyncio.gather(*(self.result(task_id) for task_id in ids)))

"""Start-up: wire the transport, scheduler, driver and leasing, and resume the stored tasks.

`Startup` is one layer of the `Engine` (see `engine.py`): `_resume` is what `start` runs after
the store is opened and claimed, `_abandon_start` undoes a start that failed.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import TYPE_CHECKING, Final, cast

from .control import TaskControl
from .leasing import Leasing
from .scheduler import Scheduler
from .steps import Driver
from .store.base import SharedStore
from .telemetry import EngineLoad
from .transport import GrpcTransport, Transport

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["ENGINE_NAME", "Startup"]

# The Engine's logger, whichever of its modules logs.
_log = logging.getLogger("asyncplugin.engine.engine")


def _engine_name() -> str:
    try:
        return f"asyncplugin-python/{metadata.version('asyncplugin')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "asyncplugin-python"


ENGINE_NAME = _engine_name()
"""Sent to plugins as `RequestContext.engine`."""

_FREEZE_AFTER_RESUMING: Final = 10_000
"""`start` moves the objects that survive a full collection to the collector's permanent
generation (`gc.collect(); gc.freeze()`) after resuming at least this many unfinished tasks."""


class Startup(TaskControl):
    """`_resume`, `_abandon_start` and the load the metrics read (`_load`)."""

    async def _resume(self) -> Scheduler:
        """Makes the transport (unless given), the scheduler and the driver, and schedules every
        unfinished task of the store at its recorded next check time."""
        self._store_failure = None
        if self._transport is None:
            self._transport = GrpcTransport()
        transport: Transport = self._transport
        fire: Callable[[str], Awaitable[None]] = self._fire
        telemetry = self._telemetry
        if telemetry is not None:
            transport = telemetry.wrap_transport(transport)
            fire = telemetry.wrap_handler(fire)
            self._writes = telemetry.wrap_store(self.store)
            self._unhook_telemetry = self._notifier.add_hook(telemetry.on_change)
        scheduler = Scheduler(
            self.clock,
            fire,
            max_concurrent=self._max_concurrent,
            group=self._target_of,
            max_per_group=self._max_per_target,
        )
        if telemetry is not None:
            telemetry.bind(
                lookup=self._active.get, clock=self.clock, load=lambda: self._load(scheduler)
            )
        leasing = None
        if isinstance(self.store, SharedStore):
            # Several workers share the store: lease near work instead of loading it all.
            # (`self` is always an Engine: this class is one of its layers.)
            engine = cast("Engine", self)
            leasing = Leasing(engine, self.store, max_held=max(2 * self._max_concurrent, 64))
        self._driver = Driver(
            clock=self.clock,
            transport=transport,
            rng=self._rng,
            policy=self.policy,
            retry_policy=self.retry_policy,
            engine_name=ENGINE_NAME,
            commit=self._commit,
            schedule=leasing.held_only(scheduler.schedule) if leasing else scheduler.schedule,
            completion=self._completion,
            before_call=leasing.before_call if leasing else None,
        )
        if leasing is None:
            now = self.clock.now()
            resumed = await self.store.unfinished()
            for record in resumed:
                self._active[record.task_id] = record
                # Overdue checks (the engine was down) fire at once, in due order.
                scheduler.schedule(record.task_id, record.next_check_time or now)
            if resumed:
                _log.info("resuming %d unfinished tasks from the store", len(resumed))
            if len(resumed) >= _FREEZE_AFTER_RESUMING:
                # Every full pass of the cyclic collector would walk each resumed record and
                # stop the loop meanwhile (tens of ms per 100k tasks, a late check for every
                # task due then); take them out of its view. They are still freed by reference
                # counting when the engine replaces them.
                gc.collect()
                gc.freeze()
        self._leasing = leasing
        return scheduler

    async def _abandon_start(self) -> None:
        """Undoes a failed `start`: forgets what it loaded, closes what it opened."""
        scheduler, self._scheduler = self._scheduler, None
        leasing, self._leasing = self._leasing, None
        self._driver = None
        self._active.clear()
        try:
            if leasing is not None:
                await leasing.stop()
            if scheduler is not None:
                await scheduler.stop()
            if self._transport is not None and self._owns_transport:
                transport, self._transport = self._transport, None
                await transport.close()
        finally:
            await self.store.close()

    def _load(self, scheduler: Scheduler) -> EngineLoad:
        """What the engine is doing now, for metrics read at scrape time."""
        states: Counter[tuple[str, str]] = Counter()
        created: dict[str, float] = {}
        for record in self._active.values():
            plugin = record.options.plugin_id or record.target
            states[plugin, record.state.name] += 1
            created[plugin] = min(created.get(plugin, record.create_time), record.create_time)
        now = self.clock.now()
        return EngineLoad(
            states=states,
            oldest_s={plugin: max(0.0, now - when) for plugin, when in created.items()},
            calls_limit=self._max_concurrent,
            target_limit=self._max_per_target,
            targets=scheduler.group_load(),
        )

"""Live updates: the engine's recorded changes fanned out to server-sent-event streams.

One `EventHub` per console listens to the engine (`Engine.add_listener`); each open stream
subscribes and receives the latest record of every task that changed since its last read (a
burst of changes to one task coalesces into one event). A stream that falls too far behind is
closed; the browser's EventSource reconnects by itself and the page reloads its rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Final

from asyncplugin.engine import Engine, TaskRecord, TaskUpdate

__all__ = ["EventHub", "Subscription", "sse_event"]

MAX_PENDING: Final = 5000
"""Changed tasks a stream may have waiting before it is closed (it reconnects and reloads)."""


class Subscription:
    """One stream's pending changes: the latest record per changed task."""

    __slots__ = ("_closed", "_pending", "_ready", "overflowed")

    def __init__(self) -> None:
        self._pending: dict[str, TaskRecord] = {}
        self._ready = asyncio.Event()
        self._closed = False
        self.overflowed = False

    def offer(self, record: TaskRecord) -> None:
        """Queues a task's new record (replacing an older one not yet read)."""
        if self._closed:
            return
        if record.task_id not in self._pending and len(self._pending) >= MAX_PENDING:
            self.overflowed = True
            self.close()
            return
        self._pending[record.task_id] = record
        self._ready.set()

    def close(self) -> None:
        """Ends the stream after what is pending."""
        self._closed = True
        self._ready.set()

    async def next_batch(self) -> list[TaskRecord] | None:
        """The records changed since the last call, oldest change first; None once closed."""
        await self._ready.wait()
        self._ready.clear()
        if self._closed:
            return None
        batch = list(self._pending.values())
        self._pending.clear()
        return batch


class EventHub:
    """Fans the engine's changes out to subscriptions."""

    def __init__(self, engine: Engine) -> None:
        self._subscriptions: set[Subscription] = set()
        self._remove: Callable[[], None] | None = engine.add_listener(self._on_change)

    def _on_change(self, update: TaskUpdate) -> None:
        for subscription in self._subscriptions:
            subscription.offer(update.record)

    def subscribe(self) -> Subscription:
        """A new subscription (unsubscribe it when the stream ends)."""
        subscription = Subscription()
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stops delivering to a subscription."""
        self._subscriptions.discard(subscription)

    @property
    def streams(self) -> int:
        """How many streams are open."""
        return len(self._subscriptions)

    def close(self) -> None:
        """Stops listening to the engine and ends every stream."""
        if self._remove is not None:
            self._remove()
            self._remove = None
        for subscription in list(self._subscriptions):
            subscription.close()
        self._subscriptions.clear()


def sse_event(name: str, data: Any) -> bytes:
    """One server-sent event: `event: NAME` and its JSON data on one line."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

"""An engine that resumes many tasks takes them out of the cyclic collector's view.

A full pass of the collector walks every tracked object and stops the loop meanwhile (tens of
milliseconds per 100k resumed tasks): after resuming at least `_FREEZE_AFTER_RESUMING` tasks,
`Engine.start` runs one collection and freezes what survives. A small store is left alone.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest

from asyncplugin.engine import MemoryStore, TaskRecord
from asyncplugin.engine import engine as engine_module
from asyncplugin.protocol import TaskState
from tests.engine.conftest import MakeEngine


@pytest.fixture(autouse=True)
def _unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A low threshold for the test; the test process's collector as it was afterwards."""
    monkeypatch.setattr(engine_module, "_FREEZE_AFTER_RESUMING", 50)
    gc.unfreeze()
    yield
    gc.unfreeze()


async def _store_with(count: int) -> MemoryStore:
    store = MemoryStore()
    due = time.time() + 3600
    for number in range(count):
        await store.create(
            TaskRecord(
                task_id=f"task-{number:05d}",
                target="127.0.0.1:1",
                method="/asyncplugin.v1.PluginService/Invoke",
                state=TaskState.RUNNING,
                payload=b"",
                idempotency_key=f"key-{number}",
                create_time=due - 3600,
                update_time=due - 3600,
                next_check_time=due,
                check_count=1,
            )
        )
    return store


async def test_resuming_many_tasks_freezes_them(make_engine: MakeEngine) -> None:
    """At the threshold, the resumed records are in the permanent generation after start."""
    store = await _store_with(50)
    engine = await make_engine(store=store)
    assert gc.get_freeze_count() > 0
    resumed = await engine.get("task-00000")
    assert not any(resumed is obj for obj in gc.get_objects())  # out of the collector's view
    assert resumed.state is TaskState.RUNNING


async def test_resuming_few_tasks_leaves_the_collector_alone(make_engine: MakeEngine) -> None:
    """Below the threshold, start freezes nothing."""
    store = await _store_with(49)
    await make_engine(store=store)
    assert gc.get_freeze_count() == 0

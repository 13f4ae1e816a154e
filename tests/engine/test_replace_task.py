"""`replace_task`, the engine's fast `dataclasses.replace` for TaskRecord, gives the same record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from asyncplugin.engine import TaskOptions, TaskRecord
from asyncplugin.engine.records import _replacer, replace_task
from asyncplugin.protocol import TaskState

RECORD = TaskRecord(
    task_id="t1",
    target="127.0.0.1:1",
    method="/asyncplugin.v1.PluginService/Invoke",
    state=TaskState.WAITING,
    payload=b"payload",
    idempotency_key="key",
    options=TaskOptions(plugin_id="p", labels=(("team", "a"),)),
    create_time=100.0,
    update_time=100.0,
    next_check_time=100.0,
    deadline=160.0,
    revision=1,
)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"revision": 2},
        {
            "state": TaskState.RUNNING,
            "status": b"\x10\x02",
            "check_count": 3,
            "retries": 0,
            "start_time": 100.5,
            "update_time": 101.0,
            "next_check_time": 103.0,
        },
        {"state": TaskState.FAILED, "error": b"\x0a\x01x", "end_time": 110.0},
    ],
)
def test_same_record_as_dataclasses_replace(changes: dict[str, object]) -> None:
    """Every field is copied or changed exactly as dataclasses.replace does; a new object."""
    copy = replace_task(RECORD, **changes)
    assert copy == dataclasses.replace(RECORD, **changes)  # type: ignore[arg-type]
    assert copy is not RECORD
    assert RECORD.revision == 1  # the original is untouched
    for name in (field.name for field in dataclasses.fields(TaskRecord)):
        expected = changes.get(name, getattr(RECORD, name))
        assert getattr(copy, name) is expected or getattr(copy, name) == expected


def test_unknown_field_is_refused() -> None:
    """A change that names no field raises TypeError naming it, as dataclasses.replace does."""
    with pytest.raises(TypeError, match="no field 'stat'"):
        replace_task(RECORD, stat=TaskState.RUNNING)


def test_refuses_classes_it_would_copy_wrongly() -> None:
    """A class whose __init__ does more than store its arguments is refused up front."""

    @dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    @dataclass(slots=True)
    class Mutable:
        value: int

    with pytest.raises(TypeError, match="__post_init__"):
        _replacer(Checked)
    with pytest.raises(TypeError, match="frozen"):
        _replacer(Mutable)

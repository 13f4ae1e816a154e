"""What each page shows: the template context of the tasks, task and plugins pages.

These read the engine through its public API only (list, get, checks) and compute every value
on the engine's clock. `remote_status_input` is read only by `remote_input`, which answers the
separate request the task page makes when a user asks for it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from asyncplugin.engine import Engine, TaskRecord
from asyncplugin.protocol import TaskState

from .probes import PluginProbes, ResolvedTypes
from .query import Page, TaskQuery, select
from .stats import plugin_stats
from .timeline import build_timeline
from .views import error_chain, is_call, task_labels, task_row

__all__ = ["Decoded", "plugins_context", "remote_input", "task_context", "tasks_context"]

SCAN_LIMIT: Final = 10_000
"""The newest tasks the tasks page filters and pages through."""
STATS_TASKS: Final = 1_000
"""The newest tasks whose check histories the plugins page reads."""
_BYTES_SHOWN: Final = 4096


class FieldErrors(dict[str, str]):
    """Error messages by form field; a field without an error reads as ""."""

    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    """A payload or result as the page shows it: JSON, or bytes with a note saying why."""

    json: Any = None
    decoded: bool
    type_name: str
    size: int
    base64: str = ""
    note: str = ""


async def tasks_context(
    engine: Engine, query: TaskQuery, errors: Mapping[str, str], *, scan_limit: int = SCAN_LIMIT
) -> dict[str, Any]:
    """The tasks page: a page of rows for a valid query; no rows while a filter is in error."""
    now = engine.clock.now()
    if errors:
        page = Page([], None)
        scanned = 0
    else:
        records = await engine.list(state=query.states or None, limit=scan_limit)
        scanned = len(records)
        page = select(records, query)
    return {
        "now": now,
        "query": query,
        "errors": FieldErrors(errors),
        "rows": [task_row(record, now=now) for record in page.records],
        "next_url": query.url("/tasks", cursor=page.next_cursor) if page.next_cursor else "",
        "first_url": query.url("/tasks") if query.cursor is not None else "",
        "first_page": query.cursor is None,
        "truncated": scanned >= scan_limit,
        "scan_limit": scan_limit,
        "states": [state.name for state in TaskState],
        "events_url": query.url("/events"),
    }


async def task_context(engine: Engine, probes: PluginProbes, task_id: str) -> dict[str, Any]:
    """The task page (raises TaskNotFound for an unknown id)."""
    record = await engine.get(task_id)
    checks = await engine.checks(task_id)
    now = engine.clock.now()
    resolved = await _types(probes, record)
    payload = _decode(record.payload, resolved, result=False)
    result = _decode(record.result, resolved, result=True) if record.result is not None else None
    task = _last_task(record)
    return {
        "now": now,
        "record": record,
        "row": task_row(record, now=now),
        "checks": checks,
        "calls": sum(1 for check in checks if is_call(check)),
        "timeline": build_timeline(record, checks, now=now),
        "error_chain": error_chain(record.error_proto()) if record.error is not None else [],
        "payload": payload,
        "result": result,
        "task": task,
        "has_remote_input": task is not None and task.remote_status_input is not None,
        "labels": sorted(task_labels(record).items()),
        "metadata_keys": [key for key, _ in record.options.metadata],
    }


async def remote_input(engine: Engine, task_id: str) -> Any:
    """The task's last `remote_status_input` (None if it has none); raises TaskNotFound."""
    record = await engine.get(task_id)
    task = _last_task(record)
    return task.remote_status_input if task is not None else None


async def plugins_context(
    engine: Engine, probes: PluginProbes, *, window_s: float, max_tasks: int = STATS_TASKS
) -> dict[str, Any]:
    """The plugins page: per target, tasks by state, call rates, failures, latency, health."""
    now = engine.clock.now()
    records = await engine.list(limit=max_tasks)
    histories = {record.task_id: await engine.checks(record.task_id) for record in records}
    stats = plugin_stats(records, histories, now=now, window_s=window_s)
    healths = await asyncio.gather(*(probes.health(item.target) for item in stats))
    for item, health in zip(stats, healths, strict=True):
        item.health, item.health_detail = health.status, health.detail
    return {
        "now": now,
        "plugins": stats,
        "window": window_s,
        "max_tasks": max_tasks,
        "truncated": len(records) >= max_tasks,
        "states": [state.name for state in TaskState],
    }


async def _types(probes: PluginProbes, record: TaskRecord) -> ResolvedTypes | None:
    try:
        return await probes.payload_types(record.target, record.method)
    except Exception:  # the page shows bytes when types cannot be had, whatever the reason
        return None


def _decode(data: bytes | None, resolved: ResolvedTypes | None, *, result: bool) -> Decoded:
    data = data or b""
    what = "result" if result else "payload"
    if resolved is None:
        return _as_bytes(data, "?", f"the {what}'s type could not be looked up")
    types = resolved.types
    name = types.type_name(result=result)
    try:
        value = types.decode_result(data) if result else types.decode_payload(data)
    except ValueError as err:
        source = (
            "the type server reflection names"
            if resolved.via_reflection
            else "no type from server reflection, so tried as a JSON object"
        )
        return _as_bytes(data, name, f"could not be decoded ({source}): {err}")
    return Decoded(json=value, decoded=True, type_name=name, size=len(data))


def _as_bytes(data: bytes, name: str, note: str) -> Decoded:
    shown = data[:_BYTES_SHOWN]
    if len(data) > len(shown):
        note += f"; the first {_BYTES_SHOWN} of {len(data)} bytes are shown"
    return Decoded(
        decoded=False,
        type_name=name,
        size=len(data),
        base64=base64.b64encode(shown).decode(),
        note=note,
    )


def _last_task(record: TaskRecord) -> Any:
    try:
        return record.task
    except Exception:  # a corrupt recorded status must not break the page
        return None

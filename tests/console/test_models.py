"""The console's pure parts: query parsing and paging, the timeline's geometry, plugin figures."""

from __future__ import annotations

import asyncio

import pytest

from asyncplugin.engine import CallKind, CheckOutcome, CheckRecord, TaskRecord
from asyncplugin.protocol import TaskState
from asyncplugin.service.console.query import Cursor, TaskQuery, parse_query, select
from asyncplugin.service.console.stats import percentile, plugin_stats
from asyncplugin.service.console.timeline import _wrap as wrap_reason
from asyncplugin.service.console.timeline import build_timeline, gap_px
from asyncplugin.service.console.views import check_progress, is_call, relative
from asyncplugin.v1 import plugin_pb2
from tests.console.conftest import StartConsole, count_marks, manual_clock
from tests.engine.conftest import MakeEngine, Serve
from tests.engine.plugins import Answer, Job, running

T0 = 1_767_225_600.0


def record(task_id: str, *, created: float = T0, state: TaskState = TaskState.SUCCEEDED,
           target: str = "127.0.0.1:1", **kwargs: object) -> TaskRecord:  # fmt: skip
    return TaskRecord(
        task_id=task_id,
        target=target,
        method="/asyncplugin.v1.PluginService/Invoke",
        state=state,
        payload=b"",
        idempotency_key="k",
        create_time=created,
        update_time=created,
        **kwargs,  # type: ignore[arg-type]
    )


def check(number: int, at: float, outcome: CheckOutcome, **kwargs: object) -> CheckRecord:
    kind = kwargs.pop("kind", CallKind.INITIATE if number == 0 else CallKind.CHECK)
    return CheckRecord(
        task_id="t",
        kind=kind,  # type: ignore[arg-type]
        check_number=number,
        started_time=at,
        finished_time=at + 0.05,
        outcome=outcome,
        **kwargs,  # type: ignore[arg-type]
    )


def test_cursor_round_trip_and_refusals() -> None:
    cursor = Cursor(T0 + 1.5, "ab" * 16)
    assert Cursor.parse(cursor.token()) == cursor
    for bad in ("", "c1.", "c1.!!!", "c2." + cursor.token()[3:], "c1.WzEsMl0", "c1.eyJhIjoxfQ"):
        with pytest.raises(ValueError, match="not a page token"):
            Cursor.parse(bad)


def test_parse_query_keeps_good_fields_and_names_bad_ones() -> None:
    query, errors = parse_query(
        {"state": ["RUNNING", "failed"], "target": ["h:1"], "q": ["ABC"], "size": ["7"]}
    )
    assert errors == {}
    assert query.states == (TaskState.RUNNING, TaskState.FAILED)
    assert (query.target, query.id_prefix, query.page_size) == ("h:1", "abc", 7)
    query, errors = parse_query({"state": ["X"], "target": ["h:1", "h:2"], "label": ["a=b"]})
    assert set(errors) == {"state", "target"}
    assert query.label == ("a", "b")
    assert "give target once" in errors["target"]


def test_select_pages_newest_first_with_stable_ties() -> None:
    records = [record(f"{i:032x}", created=T0 + (i // 2)) for i in range(7)]
    query = TaskQuery(page_size=3)
    seen: list[str] = []
    cursor = None
    while True:
        page = select(records, TaskQuery(page_size=3, cursor=cursor))
        seen += [r.task_id for r in page.records]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 7 == len(set(seen))
    created = [next(r.create_time for r in records if r.task_id == i) for i in seen]
    assert created == sorted(created, reverse=True)
    # a task submitted while paging does not shift the next page
    first = select(records, query)
    assert first.next_cursor is not None
    newer = [*records, record("f" * 32, created=T0 + 100)]
    second = select(newer, TaskQuery(page_size=3, cursor=first.next_cursor))
    assert (
        second.records == select(records, TaskQuery(page_size=3, cursor=first.next_cursor)).records
    )


def test_timeline_marks_gaps_and_progress() -> None:
    task = record("t", state=TaskState.RUNNING, next_check_time=T0 + 20.0)
    history = [
        check(0, T0, CheckOutcome.TRANSPORT_RETRY, grpc_code="UNAVAILABLE", interval_s=0.5,
              reason="transport retry 1/4: backoff 0.5s"),
        check(0, T0 + 0.55, CheckOutcome.RUNNING, message="10% queued", interval_s=1.0,
              reason="backoff 1*2^0=1.00s"),
        check(1, T0 + 1.6, CheckOutcome.RUNNING, message="40% encoding", interval_s=18.4,
              reason="plugin hint 30s clamped to 20s, jitter -8% -> 18.40s"),
    ]  # fmt: skip
    line = build_timeline(task, history, now=T0 + 2.0)
    assert [m.category for m in line.marks] == ["retry", "running", "running"]
    assert [m.x for m in line.marks] == sorted(m.x for m in line.marks)
    assert [g.reason for g in line.gaps] == [h.reason for h in history]
    assert line.gaps[-1].pending
    assert "next check in 18.0s" in line.events[-1].label
    assert [label for _, _, label in line.progress_points] == ["10%", "40%"]
    assert all(gap.x2 - gap.x1 >= 170 for gap in line.gaps)  # room for every label
    assert " ".join(line.gaps[-1].reason_lines) == history[-1].reason
    narrow = wrap_reason("backoff 0.25*1.6^3=1.02s capped at 1s jitter -2% -> 0.98s", 170.0)
    assert narrow == ("backoff 0.25*1.6^3=1.02s", "capped at 1s jitter -2% \u2026")
    assert gap_px(3600, labelled=True) > gap_px(60, labelled=True) > gap_px(1, labelled=True)


def test_history_entries_that_are_not_calls() -> None:
    give_up = check(3, T0, CheckOutcome.DEADLINE_EXCEEDED, kind=CallKind.GIVE_UP)
    nothing_sent = check(
        1, T0, CheckOutcome.CANCELLED, kind=CallKind.CANCEL,
        message="no cancel request sent: the plugin had not answered RUNNING yet",
    )  # fmt: skip
    sent = check(1, T0, CheckOutcome.CANCELLED, kind=CallKind.CANCEL, message="stopped")
    assert not is_call(give_up)
    assert not is_call(nothing_sent)
    assert is_call(sent)
    assert check_progress(check(1, T0, CheckOutcome.RUNNING, message="7% x")) == 0.07
    assert check_progress(check(1, T0, CheckOutcome.RUNNING, message="step 3")) is None
    assert check_progress(check(1, T0, CheckOutcome.SUCCEEDED)) == 1.0


async def test_engine_history_formats_match_the_console(
    make_engine: MakeEngine, serve: Serve, open_console: StartConsole
) -> None:
    """Against the real engine: progress read back from recorded RUNNING answers, and a task
    cancelled before any answer has no mark for the cancel request it did not send."""

    async def progressing(request: plugin_pb2.InvokeRequest) -> Answer:
        number = request.context.check_number
        return running({"j": 1}, fraction=min(0.3 * number, 0.9), message="work")

    plugin = await serve(progressing)
    engine = await make_engine()
    task_id = await engine.submit(plugin.target)
    for _ in range(400):
        if (await engine.get(task_id)).check_count >= 3:
            break
        await asyncio.sleep(0.005)
    checks = await engine.checks(task_id)
    fractions = [check_progress(entry) for entry in checks if entry.outcome is CheckOutcome.RUNNING]
    assert fractions[:4] == [0.0, 0.3, 0.6, 0.9]

    clock = manual_clock()
    engine2 = await make_engine(clock=clock)
    slow = await serve(Job(checks=1))
    await slow.stop()  # nothing answers: the task stays WAITING (transport retries)
    waiting = await engine2.submit(slow.target)
    await engine2.cancel(waiting)
    history = await engine2.checks(waiting)
    assert history[-1].kind is CallKind.CANCEL
    assert not is_call(history[-1])
    console = await open_console(engine2)
    _, page = await console.get(f"/tasks/{waiting}")
    assert count_marks(page) == sum(1 for entry in history if is_call(entry))


def test_plugin_stats_rates_failures_and_latency() -> None:
    ok = record("a" * 32)
    bad = record("b" * 32, state=TaskState.FAILED)
    other = record("c" * 32, target="127.0.0.1:2", state=TaskState.RUNNING)
    histories = {
        ok.task_id: [check(0, T0, CheckOutcome.RUNNING), check(1, T0 + 30, CheckOutcome.SUCCEEDED)],
        bad.task_id: [
            check(0, T0, CheckOutcome.TRANSPORT_RETRY, grpc_code="UNAVAILABLE"),
            check(0, T0 + 1, CheckOutcome.RPC_ERROR, grpc_code="INTERNAL"),
        ],
        other.task_id: [check(0, T0 - 7200, CheckOutcome.RUNNING)],  # outside the window
    }
    stats = plugin_stats([ok, bad, other], histories, now=T0 + 60, window_s=600)
    first, second = stats
    assert first.target == "127.0.0.1:1"
    assert second.target == "127.0.0.1:2"
    assert first.states == {"SUCCEEDED": 1, "FAILED": 1}
    assert first.calls == 4
    assert first.calls_per_minute == 0.4
    assert first.failures == [("UNAVAILABLE", 1, 0.25), ("INTERNAL", 1, 0.25)]
    assert first.latency_p50_s is not None
    assert abs(first.latency_p50_s - 0.05) < 1e-6
    assert second.calls == 0
    assert second.latency_p99_s is None
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert percentile(list(range(1, 101)), 0.99) == 99
    assert percentile([], 0.5) is None


def test_relative_times() -> None:
    assert [relative(s) for s in (0.25, 12.34, 245, 3 * 3600 + 120, 50 * 3600)] == [
        "250ms", "12.3s", "4m05s", "3h02m", "2d02h"
    ]  # fmt: skip

"""One task, one trace: engine and plugin spans across status checks, retries and a restart."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from asyncplugin.engine import (
    CallKind,
    CheckOutcome,
    Engine,
    EngineTelemetry,
    FakeClock,
    PollingPolicy,
    SqliteStore,
    TaskOptions,
    TaskUpdate,
)
from asyncplugin.plugin import PluginServer, PluginTelemetry
from asyncplugin.protocol import TaskState, encode_payload
from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc, task_pb2
from tests.observability.conftest import POLICY, RETRY, Countdown, hex_trace, memory_tracing

METHOD = "asyncplugin.v1.PluginService/Invoke"


def _engine(path: Path, clock: FakeClock, telemetry: EngineTelemetry, **kwargs: Any) -> Engine:
    kwargs.setdefault("policy", POLICY)
    return Engine(
        store=SqliteStore(path),
        clock=clock,
        retry_policy=RETRY,
        rng=random.Random(7),
        shutdown_grace_s=0.0,
        telemetry=telemetry,
        **kwargs,
    )


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    span_id: int = span.context.span_id
    return span_id


def _parent_id(span: ReadableSpan) -> int:
    """The span id of the span's parent (the span must have one)."""
    assert span.parent is not None, f"{span.name} has no parent"
    parent_id: int = span.parent.span_id
    return parent_id


async def test_one_trace_across_checks_retries_and_an_engine_restart(tmp_path: Path) -> None:
    """A task through a transport retry, several checks and an engine restart on the same SQLite
    file: every call is a CLIENT span of the one trace chosen at submit (a child of the submit
    span), each plugin SERVER span is the child of the engine call that reached it, the plugin's
    own span is a child of its server span, and the attributes say what was recorded."""
    engine_spans, engine_provider = memory_tracing()
    plugin_spans, plugin_provider = memory_tracing()
    clock = FakeClock()
    path = tmp_path / "tasks.db"
    # Check 1's first attempt outlasts the per-check timeout: one transport retry.
    policy = PollingPolicy(**{**POLICY.to_dict(), "check_timeout_s": 0.3})
    plugin = Countdown(plugin_provider, slow_checks=frozenset({1}), slow_s=1.0)
    telemetry = PluginTelemetry(tracer_provider=plugin_provider)
    async with PluginServer(plugin, telemetry=telemetry) as server:
        hold = contextlib.ExitStack()
        reached = asyncio.Event()

        def stop_after_check_2(update: TaskUpdate) -> None:
            if update.record.check_count == 2 and not reached.is_set():
                hold.enter_context(clock.busy())  # no simulated time passes until restarted
                reached.set()

        first = _engine(
            path,
            clock,
            EngineTelemetry(tracer_provider=engine_provider),
            policy=policy,
            on_change=stop_after_check_2,
        )
        await first.start()
        task_id = await first.submit(server.address, payload={"checks": 4})
        await reached.wait()
        await first.stop()

        second = _engine(path, clock, EngineTelemetry(tracer_provider=engine_provider))
        await second.start()
        hold.close()
        record = await second.wait(task_id, timeout_s=3600)
        history = await second.checks(task_id)
        await second.stop()

    assert record.state is TaskState.SUCCEEDED
    finished = engine_spans.get_finished_spans()
    submits = [s for s in finished if s.name == f"submit {METHOD}"]
    assert len(submits) == 1
    submit = submits[0]
    assert submit.parent is None  # nothing was current at submit: the task starts a trace
    trace_id = hex_trace(submit)
    assert record.options.traceparent.split("-")[1] == trace_id  # recorded with the task

    calls = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert [(_attrs(s)["asyncplugin.call.kind"], _attrs(s)["asyncplugin.check.number"])
            for s in calls] == [("INITIATE", 0), ("CHECK", 1), ("CHECK", 1), ("CHECK", 2),
                                ("CHECK", 3), ("CHECK", 4)]  # fmt: skip
    for span in calls:
        attrs = _attrs(span)
        assert hex_trace(span) == trace_id
        assert _parent_id(span) == _span_id(submit)
        assert span.name == METHOD
        assert attrs["rpc.system"] == "grpc"
        assert attrs["rpc.service"] == "asyncplugin.v1.PluginService"
        assert attrs["rpc.method"] == "Invoke"
        assert attrs["server.address"] == "127.0.0.1"
        assert attrs["server.port"] == int(server.address.rsplit(":", 1)[1])
        assert attrs["asyncplugin.task.id"] == task_id

    # The first attempt of check 1 timed out: a transport retry, with the retry's schedule.
    timed_out, retried = calls[1], calls[2]
    assert _attrs(timed_out)["asyncplugin.call.outcome"] == "TRANSPORT_RETRY"
    assert _attrs(timed_out)["rpc.grpc.status_code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert _attrs(timed_out)["asyncplugin.transport.retries"] == 0
    assert timed_out.status.status_code is StatusCode.ERROR
    assert _attrs(retried)["asyncplugin.transport.retries"] == 1
    assert _attrs(retried)["rpc.grpc.status_code"] == 0
    assert [_attrs(s)["asyncplugin.call.outcome"] for s in calls] == [
        "RUNNING", "TRANSPORT_RETRY", "RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"
    ]  # fmt: skip
    assert [_attrs(s)["asyncplugin.task.state"] for s in calls] == [
        "RUNNING", "RUNNING", "RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"
    ]  # fmt: skip

    # The interval chosen after each call, and its reason, are the ones recorded.
    entries = [e for e in history if e.kind is not CallKind.GIVE_UP]
    assert len(entries) == len(calls)
    for span, entry in zip(calls, entries, strict=True):
        attrs = _attrs(span)
        assert attrs["asyncplugin.call.outcome"] == entry.outcome.value
        if entry.interval_s is None:
            assert "asyncplugin.next_check.interval_s" not in attrs
        else:
            assert attrs["asyncplugin.next_check.interval_s"] == pytest.approx(entry.interval_s)
            assert attrs["asyncplugin.next_check.reason"] == entry.reason
            assert entry.reason  # e.g. "backoff 1*2^1=2s jitter +5% -> 2.1s"
    assert entries[1].outcome is CheckOutcome.TRANSPORT_RETRY
    # Checks 3 and 4 were sent by the restarted engine, late by nothing (time was held).
    assert _attrs(calls[4])["asyncplugin.check.lateness_s"] == pytest.approx(0.0)

    # Plugin side: one SERVER span per call that reached the handler, each the child of the
    # engine's span for that call, in the same trace.
    servers = [s for s in plugin_spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    by_id = {_span_id(s): s for s in calls}
    assert len(servers) == len(calls)
    for span in servers:
        attrs = _attrs(span)
        assert hex_trace(span) == trace_id
        assert span.parent is not None
        assert span.parent.is_remote
        parent = by_id[_parent_id(span)]
        assert attrs["asyncplugin.task.id"] == task_id
        assert attrs["asyncplugin.check.number"] == _attrs(parent)["asyncplugin.check.number"]
        assert attrs["asyncplugin.call.kind"] == _attrs(parent)["asyncplugin.call.kind"]
        assert attrs["rpc.system"] == "grpc"
    answered = {
        _attrs(by_id[_parent_id(s)])["asyncplugin.check.number"]: s
        for s in servers
        if "asyncplugin.call.outcome" in _attrs(s)
    }
    assert {n: _attrs(s)["asyncplugin.call.outcome"] for n, s in answered.items()} == {
        0: "RUNNING", 1: "RUNNING", 2: "RUNNING", 3: "RUNNING", 4: "SUCCEEDED"
    }  # fmt: skip

    # The plugin's own span sits under the server span of its call.
    polls = [s for s in plugin_spans.get_finished_spans() if s.name == "third-party poll"]
    server_ids = {_span_id(s) for s in servers}
    assert len(polls) == 4  # checks 1 (answered attempt), 2, 3, 4
    for span in polls:
        assert hex_trace(span) == trace_id
        assert _parent_id(span) in server_ids


async def test_submit_joins_the_callers_trace(tmp_path: Path) -> None:
    """A task submitted inside a span of the caller (say, the web request that asked for it)
    is part of the caller's trace; a traceparent given in TaskOptions wins over it."""
    spans, provider = memory_tracing()
    caller = provider.get_tracer("tests.caller")
    clock = FakeClock()
    async with PluginServer(Countdown()) as server:
        engine = _engine(tmp_path / "t.db", clock, EngineTelemetry(tracer_provider=provider))
        async with engine:
            with caller.start_as_current_span("POST /reports") as request_span:
                joined = await engine.submit(server.address, payload={"checks": 1})
            given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            explicit = await engine.submit(
                server.address, payload={"checks": 1}, options=TaskOptions(traceparent=given)
            )
            await engine.wait(joined, timeout_s=600)
            await engine.wait(explicit, timeout_s=600)
    submits = {
        _attrs(s)["asyncplugin.task.id"]: s
        for s in spans.get_finished_spans()
        if s.name.startswith("submit ")
    }
    assert _parent_id(submits[joined]) == request_span.get_span_context().span_id
    assert hex_trace(submits[joined]) == trace.format_trace_id(
        request_span.get_span_context().trace_id
    )
    assert hex_trace(submits[explicit]) == "0af7651916cd43dd8448eb211c80319c"
    assert _parent_id(submits[explicit]) == 0xB7AD6B7169203331


BAD_TRACEPARENTS = [
    pytest.param("garbage", id="not-w3c"),
    pytest.param("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", id="no-flags"),
    pytest.param("00-00000000000000000000000000000000-b7ad6b7169203331-01", id="zero-trace"),
    pytest.param("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", id="zero-span"),
    pytest.param("00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01", id="upper-case"),
    pytest.param("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", id="v00-tail"),
    pytest.param(
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-" + "x" * 600, id="oversized"
    ),
]


@pytest.mark.parametrize("traceparent", BAD_TRACEPARENTS)
async def test_bad_traceparent_from_a_client_starts_a_new_trace(traceparent: str) -> None:
    """A malformed or oversized traceparent reaching the plugin server is ignored: the call is
    answered as usual and its server span starts a trace of its own."""
    spans, provider = memory_tracing()
    plugin = Countdown()
    telemetry = PluginTelemetry(tracer_provider=provider)
    async with (
        PluginServer(plugin, telemetry=telemetry) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = plugin_pb2_grpc.PluginServiceStub(channel)
        request = plugin_pb2.InvokeRequest(
            data=encode_payload({"checks": 2}),
            context=plugin_pb2.RequestContext(task_id="t-bad", idempotency_key="k"),
        )
        response = await stub.Invoke(request, timeout=10, metadata=(("traceparent", traceparent),))
    assert response.status.state == task_pb2.TASK_STATE_RUNNING
    (span,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert span.parent is None
    assert hex_trace(span) != "0af7651916cd43dd8448eb211c80319c"
    assert _attrs(span)["asyncplugin.task.id"] == "t-bad"


async def test_good_traceparent_from_a_client_is_continued() -> None:
    """The control for the test above: a well-formed traceparent is continued."""
    spans, provider = memory_tracing()
    telemetry = PluginTelemetry(tracer_provider=provider)
    async with (
        PluginServer(Countdown(), telemetry=telemetry) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = plugin_pb2_grpc.PluginServiceStub(channel)
        request = plugin_pb2.InvokeRequest(data=encode_payload({"checks": 2}))
        good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        await stub.Invoke(request, timeout=10, metadata=(("traceparent", good),))
    (span,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert hex_trace(span) == "0af7651916cd43dd8448eb211c80319c"
    assert _parent_id(span) == 0xB7AD6B7169203331


@pytest.mark.parametrize("traceparent", BAD_TRACEPARENTS)
async def test_bad_traceparent_given_to_the_engine_starts_a_new_trace(
    tmp_path: Path, traceparent: str
) -> None:
    """A malformed or oversized TaskOptions.traceparent is no error: the task runs, and its
    trace starts at its submit span; the plugin receives the engine's own valid context."""
    spans, provider = memory_tracing()
    plugin_spans, plugin_provider = memory_tracing()
    clock = FakeClock()
    telemetry = PluginTelemetry(tracer_provider=plugin_provider)
    async with PluginServer(Countdown(), telemetry=telemetry) as server:
        engine = _engine(tmp_path / "t.db", clock, EngineTelemetry(tracer_provider=provider))
        async with engine:
            record = await engine.invoke(
                server.address,
                payload={"checks": 1},
                options=TaskOptions(traceparent=traceparent),
                timeout_s=600,
            )
    assert record.state is TaskState.SUCCEEDED
    finished = spans.get_finished_spans()
    (submit,) = [s for s in finished if s.name.startswith("submit ")]
    assert submit.parent is None
    trace_id = hex_trace(submit)
    assert trace_id != "0af7651916cd43dd8448eb211c80319c"
    assert all(hex_trace(s) == trace_id for s in finished)
    assert {hex_trace(s) for s in plugin_spans.get_finished_spans()} == {trace_id}

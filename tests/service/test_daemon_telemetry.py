"""The engine service and the engine's telemetry: completions join the task's trace and are
counted; a submitter's trace context is continued (in-process, in-memory span exporter)."""

from __future__ import annotations

import random

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from asyncplugin.engine import Engine, EngineTelemetry, FakeClock, MemoryStore
from asyncplugin.engine.v1 import engine_pb2, engine_pb2_grpc
from asyncplugin.observability import start_metrics_server
from asyncplugin.plugin import CompletionClient, CompletionRefused
from asyncplugin.protocol import Progress
from asyncplugin.service import CompletionTokens, EngineClient, EngineServer
from asyncplugin.v1 import plugin_pb2, task_pb2
from tests.engine.conftest import POLICY, RETRY, SEED
from tests.engine.plugins import Answer, running
from tests.observability.conftest import http_get, memory_tracing, samples, total
from tests.service.conftest import KEY, Serve

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"
INVOKE = "asyncplugin.v1.PluginService/Invoke"
SUBMIT = f"submit {INVOKE}"


class Remembering:
    """RUNNING with a 30 s hint; keeps each call's context (the completion token is in it)."""

    def __init__(self) -> None:
        self.contexts: list[plugin_pb2.RequestContext] = []

    async def __call__(self, request: plugin_pb2.InvokeRequest) -> Answer:
        self.contexts.append(request.context)
        return running({"job": request.context.task_id}, hint_s=30.0)


def _trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return trace.format_trace_id(span.context.trace_id)


def _all(spans: list[ReadableSpan], name: str, task_id: str) -> list[ReadableSpan]:
    """The spans named `name` of one task."""
    return [
        s
        for s in spans
        if s.name == name and s.attributes and s.attributes.get("asyncplugin.task.id") == task_id
    ]


def _one(spans: list[ReadableSpan], name: str, task_id: str) -> ReadableSpan:
    """The one span named `name` of one task."""
    (found,) = _all(spans, name, task_id)
    return found


async def test_completions_join_the_task_trace_and_are_counted(serve: Serve) -> None:
    """CompleteTask adds a SERVER span to the task's trace, under its submit span; a refused
    (different, late) completion too, marked ERROR; UpdateTask adds its own span; a forged token
    adds none (it names no task that can be trusted) but is counted refused. The engine's
    /metrics, scraped over HTTP, counts them by method and result."""
    exporter, provider = memory_tracing()
    registry = CollectorRegistry()
    clock = FakeClock()
    completion = CompletionTokens([KEY])
    engine = Engine(
        store=MemoryStore(),
        clock=clock,
        policy=POLICY,
        retry_policy=RETRY,
        rng=random.Random(SEED),
        completion=completion,
        telemetry=EngineTelemetry(tracer_provider=provider, registry=registry),
    )
    server = EngineServer(engine, completion=completion)
    plugin = Remembering()
    target = (await serve(plugin)).target
    await server.start()
    metrics = await start_metrics_server("127.0.0.1", 0, registry)
    try:
        async with EngineClient(server.address) as client, CompletionClient() as completions:
            with clock.busy():  # no simulated time passes: no status check comes first
                done_id = (await client.submit(target)).task_id
                updated_id = (await client.submit(target)).task_id
                for task_id in (done_id, updated_id):
                    async for change in client.watch(task_id):
                        if change.task.state == task_pb2.TASK_STATE_RUNNING:
                            break
                tokens = {c.task_id: c.completion_token for c in plugin.contexts}
                address = plugin.contexts[0].engine_address
                assert not await completions.complete(address, tokens[done_id], data=b"pushed")
                with pytest.raises(CompletionRefused) as late:
                    await completions.complete(address, tokens[done_id], data=b"other")
                assert late.value.code is grpc.StatusCode.FAILED_PRECONDITION
                version, key_id, task_id, expiry, signature = tokens[updated_id].split(".")
                forged = ".".join((version, key_id, task_id, expiry, "A" + signature[1:]))
                if forged == tokens[updated_id]:
                    forged = ".".join((version, key_id, task_id, expiry, "B" + signature[1:]))
                with pytest.raises(CompletionRefused) as refused:
                    await completions.complete(address, forged, data=b"forged")
                assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
                await completions.update(
                    address, tokens[updated_id], progress=Progress(fraction=0.5)
                )
                status, text = await http_get(metrics.url)
    finally:
        await metrics.close()
        await server.stop(0)

    assert status == 200
    parsed = samples(text)
    name = "asyncplugin_engine_completions_total"
    assert total(parsed, name, method="CompleteTask", result="accepted") == 1
    assert total(parsed, name, method="CompleteTask", result="refused") == 2
    assert total(parsed, name, method="UpdateTask", result="accepted") == 1
    assert total(parsed, name, method="UpdateTask", result="refused") == 0
    assert total(parsed, "asyncplugin_engine_tasks_finished_total", outcome="SUCCEEDED") == 1
    assert total(parsed, "asyncplugin_engine_tasks", state="RUNNING") == 1

    spans = list(exporter.get_finished_spans())
    submit = _one(spans, SUBMIT, done_id)
    initiate = _one(spans, INVOKE, done_id)
    completes = _all(spans, "complete task", done_id)
    assert len(completes) == 2  # the accepted completion and the refused late one
    accepted, late_span = sorted(completes, key=lambda s: s.start_time or 0)
    assert submit.context is not None
    for span in (initiate, accepted, late_span):
        assert _trace(span) == _trace(submit)
        assert span.parent is not None
        assert span.parent.span_id == submit.context.span_id
    assert accepted.kind is SpanKind.SERVER
    assert accepted.attributes is not None
    assert accepted.attributes["asyncplugin.completion.accepted"] is True
    assert accepted.attributes["asyncplugin.task.state"] == "SUCCEEDED"
    assert accepted.attributes["rpc.method"] == "CompleteTask"
    assert accepted.status.status_code is not StatusCode.ERROR
    assert late_span.attributes is not None
    assert late_span.attributes["asyncplugin.completion.accepted"] is False
    assert late_span.status.status_code is StatusCode.ERROR
    assert "SUCCEEDED" in str(late_span.attributes["asyncplugin.completion.reason"])
    update = _one(spans, "update task", updated_id)
    assert _trace(update) == _trace(_one(spans, SUBMIT, updated_id))
    # The forged token left no span anywhere, and no span holds a token.
    assert not [s for s in spans if s.name == "complete task" and s not in completes]
    for span in spans:
        for value in (span.attributes or {}).values():
            assert str(value) not in (forged, *tokens.values())


@pytest.mark.parametrize(
    ("sent", "continued"),
    [
        (CLIENT_PARENT, True),
        ("00-not-a-trace-01", False),
        ("00-" + "f" * 600, False),
    ],
)
async def test_submit_continues_a_valid_client_trace_and_ignores_a_bad_one(
    serve: Serve, sent: str, continued: bool
) -> None:
    """A client's `traceparent` on SubmitTask becomes the parent of the task's submit span (so
    the task's calls are in the client's trace); a malformed or oversized one is ignored: the
    task starts a new trace and the submit succeeds."""
    exporter, provider = memory_tracing()
    engine = Engine(
        store=MemoryStore(),
        clock=FakeClock(),
        policy=POLICY,
        telemetry=EngineTelemetry(tracer_provider=provider),
    )
    server = EngineServer(engine)
    target = (await serve(Remembering())).target
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = engine_pb2_grpc.EngineServiceStub(channel)
            response = await stub.SubmitTask(
                engine_pb2.SubmitTaskRequest(target=target),
                metadata=(("traceparent", sent),),
                timeout=10,
            )
    finally:
        await server.stop(0)
    (submit,) = [s for s in exporter.get_finished_spans() if s.name.startswith("submit ")]
    assert submit.attributes is not None
    assert submit.attributes["asyncplugin.task.id"] == response.task.task_id
    if continued:
        assert _trace(submit) == CLIENT_TRACE
        assert submit.parent is not None
        assert submit.parent.span_id == 0x00F067AA0BA902B7
    else:
        assert _trace(submit) != CLIENT_TRACE
        assert submit.parent is None

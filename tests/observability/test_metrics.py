"""Prometheus metrics of the engine and the plugin server, scraped over real HTTP."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from asyncplugin.cli import main
from asyncplugin.engine import Engine, EngineTelemetry, FakeClock, SqliteStore, TaskOptions
from asyncplugin.observability import MetricsServerError, start_metrics_server
from asyncplugin.plugin import PluginServer, PluginTelemetry
from asyncplugin.protocol import TaskState
from tests.observability.conftest import POLICY, RETRY, Countdown, http_get, samples, total


async def test_both_endpoints_count_what_the_test_did(tmp_path: Path) -> None:
    """3 tasks (2 succeed after 2 and 3 checks, 1 fails at its 2nd check: 7 checks in all) and
    one malformed call: both /metrics endpoints, scraped over HTTP, say exactly that."""
    engine_registry, plugin_registry = CollectorRegistry(), CollectorRegistry()
    plugin_telemetry = PluginTelemetry(registry=plugin_registry)
    async with PluginServer(Countdown(), telemetry=plugin_telemetry) as server:
        plugin_metrics = await start_metrics_server("127.0.0.1", 0, plugin_registry)
        engine = Engine(
            store=SqliteStore(tmp_path / "tasks.db"),
            clock=FakeClock(),
            policy=POLICY,
            retry_policy=RETRY,
            rng=random.Random(3),
            telemetry=EngineTelemetry(registry=engine_registry),
        )
        engine_metrics = await start_metrics_server("127.0.0.1", 0, engine_registry)
        try:
            async with engine:
                options = TaskOptions(plugin_id="countdown")
                ids = [
                    await engine.submit(server.address, payload=payload, options=options)
                    for payload in ({"checks": 2}, {"checks": 3}, {"checks": 2, "fail": True})
                ]
                records = [await engine.wait(task_id, timeout_s=3600) for task_id in ids]
                # A call the server refuses (the request is not an envelope).
                async with grpc.aio.insecure_channel(server.address) as channel:
                    invoke: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                        "/asyncplugin.v1.PluginService/Invoke"
                    )
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await invoke(b"\xff\xff", timeout=10)
                assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                status, engine_text = await http_get(engine_metrics.url)
                assert status == 200
                while_running = samples(engine_text)
            status, plugin_text = await http_get(plugin_metrics.url)
            assert status == 200
        finally:
            await engine_metrics.close()
            await plugin_metrics.close()

    assert [r.state for r in records] == [TaskState.SUCCEEDED] * 2 + [TaskState.FAILED]
    e = while_running
    assert total(e, "asyncplugin_engine_tasks_submitted_total", plugin="countdown") == 3
    assert total(e, "asyncplugin_engine_tasks_finished_total", outcome="SUCCEEDED") == 2
    assert (
        total(e, "asyncplugin_engine_tasks_finished_total", outcome="FAILED", code="JOB_FAILED")
        == 1
    )
    assert total(e, "asyncplugin_engine_tasks_finished_total") == 3
    assert total(e, "asyncplugin_engine_calls_total", kind="INITIATE", outcome="RUNNING") == 3
    assert total(e, "asyncplugin_engine_calls_total", kind="CHECK") == 7
    assert total(e, "asyncplugin_engine_calls_total", kind="CHECK", outcome="RUNNING") == 4
    assert total(e, "asyncplugin_engine_calls_total", kind="CHECK", outcome="SUCCEEDED") == 2
    assert total(e, "asyncplugin_engine_calls_total", kind="CHECK", outcome="FAILED") == 1
    assert total(e, "asyncplugin_engine_transport_retries_total") == 0
    assert total(e, "asyncplugin_engine_call_duration_seconds_count", plugin="countdown") == 10
    assert total(e, "asyncplugin_engine_check_lateness_seconds_count", kind="CHECK") == 7
    assert total(e, "asyncplugin_engine_check_lateness_seconds_count", kind="INITIATE") == 3
    assert (
        total(e, "asyncplugin_engine_store_write_duration_seconds_count", operation="create") == 3
    )
    assert (
        total(e, "asyncplugin_engine_store_write_duration_seconds_count", operation="record") == 10
    )
    assert total(e, "asyncplugin_engine_tasks", state="RUNNING") == 0
    assert total(e, "asyncplugin_engine_tasks", state="WAITING") == 0
    assert total(e, "asyncplugin_engine_calls_in_flight") == 0
    assert total(e, "asyncplugin_engine_calls_limit") == 64
    assert total(e, "asyncplugin_engine_target_calls_limit") == 32
    assert total(e, "asyncplugin_engine_completions_total", result="accepted") == 0
    # No task id appears anywhere in the exposition.
    assert not any(task_id in engine_text for task_id in ids)

    p = samples(plugin_text)
    assert total(p, "asyncplugin_plugin_calls_total", kind="INITIATE", answer="RUNNING") == 3
    assert total(p, "asyncplugin_plugin_calls_total", kind="CHECK", answer="RUNNING") == 4
    assert total(p, "asyncplugin_plugin_calls_total", kind="CHECK", answer="SUCCEEDED") == 2
    assert total(p, "asyncplugin_plugin_calls_total", kind="CHECK", answer="FAILED") == 1
    assert total(p, "asyncplugin_plugin_calls_total", kind="UNKNOWN", answer="REFUSED") == 1
    assert total(p, "asyncplugin_plugin_calls_total") == 11
    assert total(p, "asyncplugin_plugin_handler_duration_seconds_count") == 11
    assert total(p, "asyncplugin_plugin_calls_in_flight") == 0


async def test_tasks_by_state_while_running(tmp_path: Path) -> None:
    """The tasks gauge counts the unfinished tasks the engine drives, and the age gauge says how
    long the oldest has been unfinished, both read at scrape time."""
    registry = CollectorRegistry()
    clock = FakeClock(auto_advance=False)  # nothing moves: tasks stay RUNNING
    async with PluginServer(Countdown()) as server:
        engine = Engine(
            store=SqliteStore(tmp_path / "tasks.db"),
            clock=clock,
            policy=POLICY,
            telemetry=EngineTelemetry(registry=registry),
        )
        metrics = await start_metrics_server("127.0.0.1", 0, registry)
        try:
            async with engine:
                ids = [await engine.submit(server.address, payload={"checks": 5}) for _ in "ab"]
                for task_id in ids:
                    while (await engine.get(task_id)).state is not TaskState.RUNNING:
                        await _yield()
                clock.advance(120.0)  # two minutes without an answer
                _, text = await http_get(metrics.url)
        finally:
            await metrics.close()
    parsed = samples(text)
    plugin = server.address  # no plugin_id given: the target names the plugin
    assert total(parsed, "asyncplugin_engine_tasks", plugin=plugin, state="RUNNING") == 2
    assert total(parsed, "asyncplugin_engine_tasks", state="WAITING") == 0
    assert total(parsed, "asyncplugin_engine_oldest_task_age_seconds", plugin=plugin) == 120.0


async def _yield() -> None:
    import asyncio

    await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/metrics", 200),
        ("HEAD", "/metrics", 405),
        ("POST", "/metrics", 405),
        ("PUT", "/metrics", 405),
        ("DELETE", "/metrics", 405),
        ("GET", "/", 404),
        ("GET", "/metrics/", 404),
        ("GET", "/metrics.txt", 404),
        ("GET", "/../metrics/x", 404),
        ("POST", "/other", 404),
    ],
)
async def test_endpoint_serves_only_get_of_the_metrics_path(
    method: str, path: str, status: int
) -> None:
    """GET /metrics is the one thing served; other methods are 405, other paths 404."""
    registry = CollectorRegistry()
    server = await start_metrics_server("127.0.0.1", 0, registry)
    try:
        got, body = await http_get(f"http://127.0.0.1:{server.port}{path}", method)
    finally:
        await server.close()
    assert got == status
    if status == 200:
        assert body.startswith("# HELP") or body == ""


async def test_endpoint_on_a_port_in_use_fails_at_start() -> None:
    """Binding a metrics endpoint to a port another socket listens on raises at once, naming
    the address."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(MetricsServerError, match=f"127.0.0.1:{port}"):
            await start_metrics_server("127.0.0.1", port, CollectorRegistry())


def test_serve_metrics_port_in_use_exits_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`asyncplugin serve --metrics-port` on a taken port fails at start: one line, exit 1."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = main(["serve", "server.echo:Echo", "--port", "0", "--metrics-port", str(port)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err

"""JSON log lines: one object per line, with the task id, trace id and span id; no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from asyncplugin import Request
from asyncplugin.engine import Engine, EngineTelemetry, FakeClock, MemoryStore
from asyncplugin.observability import JsonFormatter, redact
from asyncplugin.plugin import AsyncPlugin, PluginServer, PluginTelemetry
from asyncplugin.protocol import TaskState, encode_payload
from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc
from tests.engine.plugins import PluginServer as BarePlugin
from tests.engine.plugins import constant
from tests.observability.conftest import POLICY, hex_trace, memory_tracing

REPO_ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@contextmanager
def json_lines(logger_name: str) -> Iterator[io.StringIO]:
    """Captures the logger's records as JSON lines (JsonFormatter) in a string buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _objects(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as one JSON object (fails on any other line)."""
    objects = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(obj, dict) for obj in objects)
    return objects


class Chatty(AsyncPlugin[dict[str, Any], dict[str, Any]]):
    """Logs one line from inside its handler, the way a plugin author would."""

    async def run(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
        logging.getLogger("tests.chatty").info("asking the remote API")
        return {"ok": True}


async def test_plugin_log_lines_carry_task_trace_and_span_ids() -> None:
    """A line the plugin logs while answering a traced call names the call's task id, the
    trace id the engine sent, and the id of the server span it runs under."""
    spans, provider = memory_tracing()
    telemetry = PluginTelemetry(tracer_provider=provider)
    with json_lines("tests.chatty") as buffer:
        async with (
            PluginServer(Chatty(), telemetry=telemetry) as server,
            grpc.aio.insecure_channel(server.address) as channel,
        ):
            stub = plugin_pb2_grpc.PluginServiceStub(channel)
            request = plugin_pb2.InvokeRequest(
                data=encode_payload({}),
                context=plugin_pb2.RequestContext(task_id="t-logged", idempotency_key="k"),
            )
            await stub.Invoke(request, timeout=10, metadata=(("traceparent", TRACEPARENT),))
    (line,) = _objects(buffer.getvalue())
    (server_span,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server_span.context is not None
    assert line["message"] == "asking the remote API"
    assert line["level"] == "INFO"
    assert line["logger"] == "tests.chatty"
    assert line["task_id"] == "t-logged"
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert line["span_id"] == trace.format_span_id(server_span.context.span_id)


async def test_plugin_log_lines_carry_the_task_id_without_tracing() -> None:
    """Telemetry with neither tracing nor metrics still puts the task id on the plugin's lines
    (and no trace or span id, since there is no span)."""
    with json_lines("tests.chatty") as buffer:
        async with (
            PluginServer(Chatty(), telemetry=PluginTelemetry()) as server,
            grpc.aio.insecure_channel(server.address) as channel,
        ):
            stub = plugin_pb2_grpc.PluginServiceStub(channel)
            context = plugin_pb2.RequestContext(task_id="t-plain", idempotency_key="k")
            request = plugin_pb2.InvokeRequest(data=encode_payload({}), context=context)
            await stub.Invoke(request, timeout=10)
    (line,) = _objects(buffer.getvalue())
    assert line["task_id"] == "t-plain"
    assert "trace_id" not in line
    assert "span_id" not in line


async def test_engine_log_lines_carry_task_and_trace_ids() -> None:
    """The engine's warning about a plugin breaking a protocol rule is logged with the task id
    and the task's trace id (the context recorded at submit)."""
    spans, provider = memory_tracing()
    plugin = await BarePlugin(constant(plugin_pb2.InvokeResponse())).start()  # no data/status
    try:
        engine = Engine(
            store=MemoryStore(),
            clock=FakeClock(),
            policy=POLICY,
            rng=random.Random(1),
            telemetry=EngineTelemetry(tracer_provider=provider),
        )
        with json_lines("asyncplugin.engine") as buffer:
            async with engine:
                record = await engine.invoke(plugin.target, payload={}, timeout_s=600)
    finally:
        await plugin.stop()
    assert record.state is TaskState.FAILED
    lines = [obj for obj in _objects(buffer.getvalue()) if "NO_DATA_OR_STATUS" in obj["message"]]
    assert len(lines) == 1
    (submit,) = [s for s in spans.get_finished_spans() if s.name.startswith("submit ")]
    assert lines[0]["level"] == "WARNING"
    assert lines[0]["task_id"] == record.task_id
    assert lines[0]["trace_id"] == hex_trace(submit)


def test_redact_hides_bearer_tokens_and_private_keys() -> None:
    """The JSON formatter's second line of defence: credentials in a message are replaced."""
    text = (
        "metadata authorization: Bearer s3cr3t-t0ken, then -----BEGIN PRIVATE KEY-----\n"
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY----- done"
    )
    cleaned = redact(text)
    assert "s3cr3t-t0ken" not in cleaned
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in cleaned
    assert "Bearer <redacted>" in cleaned
    assert cleaned.endswith("<redacted private key> done")
    assert redact("nothing to hide here") == "nothing to hide here"


async def test_serve_log_format_json_lines_hold_task_ids_and_no_token(tmp_path: Path) -> None:
    """`asyncplugin serve --log-format json --debug --token-file F`: an authorized call that
    fails and a call with a wrong token; every stderr line is one JSON object, the plugin's
    line names the task, and neither token appears anywhere in the output."""
    token = "tok-" + "9f8e7d6c5b4a" * 3
    wrong = "wrong-" + token
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asyncplugin.cli", "serve", "server.failing:Failing",
        "--port", "0", "--log-format", "json", "--debug", "--token-file", str(token_file),
        cwd=REPO_ROOT, env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        match = re.fullmatch(r"serving failing on (127\.0\.0\.1:\d+)\n", line)
        assert match, line
        async with grpc.aio.insecure_channel(match.group(1)) as channel:
            stub = plugin_pb2_grpc.PluginServiceStub(channel)
            context = plugin_pb2.RequestContext(task_id="t-json", idempotency_key="k")
            request = plugin_pb2.InvokeRequest(data=encode_payload({}), context=context)
            answer = await stub.Invoke(
                request, timeout=10, metadata=(("authorization", f"Bearer {token}"),)
            )
            assert answer.status.error.code == "REMOTE_QUOTA_EXCEEDED"
            with pytest.raises(grpc.aio.AioRpcError) as refusal:
                await stub.Invoke(
                    request, timeout=10, metadata=(("authorization", f"Bearer {wrong}"),)
                )
            assert refusal.value.code() is grpc.StatusCode.UNAUTHENTICATED
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    output = line + out.decode() + err.decode()
    assert token not in output
    assert "9f8e7d6c5b4a" not in output
    objects = _objects(err.decode())
    failed = [o for o in objects if "answered FAILED" in o["message"]]
    assert len(failed) == 1
    assert failed[0]["task_id"] == "t-json"
    refused = [o for o in objects if "refused a call" in o["message"]]
    assert len(refused) == 1
    assert "task_id" not in refused[0]  # refused before the request is read
    assert {"time", "level", "logger", "message"} <= set(objects[0])

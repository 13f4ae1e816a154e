"""`asyncplugin engine serve` with --metrics-port and --log-format json, run as an operator
runs it: the metrics scraped over real HTTP count what the test did through the daemon, and the
JSON log lines name tasks and never hold a bearer or completion token."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import grpc
import pytest

from asyncplugin.cli import main
from asyncplugin.plugin import CompletionClient, CompletionRefused
from asyncplugin.protocol import Progress
from asyncplugin.service import EngineClient, EngineServiceError, new_key_line
from asyncplugin.v1 import plugin_pb2, task_pb2
from tests.engine.plugins import Answer, running
from tests.observability.conftest import http_get, samples, total
from tests.service.conftest import Serve
from tests.service.daemon_proc import start_daemon_process

TOKEN = "daemon-bearer-" + "5e4d3c2b1a09" * 3
# No status check within the test: the plugin's 60 s hint is within --max-interval.
SLOW_POLICY = ("--initial-interval", "60", "--max-interval", "120")


class Remembering:
    """RUNNING with a 60 s hint; keeps each call's context (the completion token is in it)."""

    def __init__(self) -> None:
        self.contexts: list[plugin_pb2.RequestContext] = []

    async def __call__(self, request: plugin_pb2.InvokeRequest) -> Answer:
        self.contexts.append(request.context)
        return running({"job": request.context.task_id}, hint_s=60.0)


def _forge(token: str) -> str:
    """The token with its signature altered."""
    head, _, signature = token.rpartition(".")
    return f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as one JSON object (fails on any other line)."""
    objects = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(obj, dict) for obj in objects)
    return objects


async def test_daemon_metrics_and_json_logs(tmp_path: Path, serve: Serve) -> None:
    """Three tasks submitted through the daemon; one completed by CompleteTask, one refused a
    forged token, a late different completion refused, one progress report: /metrics (real
    HTTP) counts exactly that, and stderr is JSON lines naming the tasks, with no token."""
    plugin = Remembering()
    target = (await serve(plugin)).target
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    keys = tmp_path / "keys"
    keys.write_text(new_key_line("k1") + "\n")
    log = tmp_path / "daemon.log"
    daemon, address = await start_daemon_process(
        tmp_path / "tasks.sqlite3",
        log,
        *SLOW_POLICY,
        "--token-file", str(token_file),
        "--completion-keys", str(keys),
        "--metrics-port", "0",
        "--log-format", "json",
    )  # fmt: skip
    try:
        metrics_url = (await daemon.wait_for("metrics on ", timeout_s=10)).split()[2]
        async with EngineClient(address, token=TOKEN) as client:
            ids = [(await client.submit(target, labels={"n": str(n)})).task_id for n in range(3)]
            for task_id in ids:
                async for change in client.watch(task_id):
                    if change.task.state == task_pb2.TASK_STATE_RUNNING:
                        break
            done_id, forged_id, updated_id = ids
            tokens = {c.task_id: c.completion_token for c in plugin.contexts}
            engine_address = plugin.contexts[0].engine_address
            assert engine_address == address
            async with CompletionClient() as completions:
                assert not await completions.complete(address, tokens[done_id], data=b"pushed")
                with pytest.raises(CompletionRefused) as late:
                    await completions.complete(address, tokens[done_id], data=b"other")
                assert late.value.code is grpc.StatusCode.FAILED_PRECONDITION
                with pytest.raises(CompletionRefused) as forged:
                    await completions.complete(address, _forge(tokens[forged_id]), data=b"x")
                assert forged.value.code is grpc.StatusCode.PERMISSION_DENIED
                await completions.update(
                    address, tokens[updated_id], progress=Progress(fraction=0.25)
                )
            assert (await client.get(done_id)).state == task_pb2.TASK_STATE_SUCCEEDED
        async with EngineClient(address, token="wrong-" + TOKEN) as stranger:
            with pytest.raises(EngineServiceError) as unauthenticated:
                await stranger.get(done_id)
            assert unauthenticated.value.code is grpc.StatusCode.UNAUTHENTICATED
        status, text = await http_get(metrics_url)
        os.kill(daemon.pid, signal.SIGTERM)
        assert await daemon.wait(timeout_s=30) == 0
    finally:
        await daemon.kill()

    assert status == 200
    parsed = samples(text)
    assert total(parsed, "asyncplugin_engine_tasks_submitted_total") == 3
    assert total(parsed, "asyncplugin_engine_calls_total", kind="INITIATE", outcome="RUNNING") == 3
    assert total(parsed, "asyncplugin_engine_calls_total", kind="CHECK") == 0
    completions_total = "asyncplugin_engine_completions_total"
    assert total(parsed, completions_total, method="CompleteTask", result="accepted") == 1
    assert total(parsed, completions_total, method="CompleteTask", result="refused") == 2
    assert total(parsed, completions_total, method="UpdateTask", result="accepted") == 1
    assert total(parsed, "asyncplugin_engine_tasks_finished_total", outcome="SUCCEEDED") == 1
    assert total(parsed, "asyncplugin_engine_tasks_finished_total") == 1
    assert total(parsed, "asyncplugin_engine_tasks", state="RUNNING") == 2
    assert not any(task_id in text for task_id in ids)  # no task id is a label

    err = log.read_text()
    output = err + "\n".join(daemon.lines)
    for secret in (TOKEN, "5e4d3c2b1a09", *tokens.values(), _forge(tokens[forged_id])):
        assert secret not in output
    for token in tokens.values():
        assert token.rpartition(".")[2] not in output  # not even a token's signature
    lines = _json_lines(err)
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    # Watches left mid-stream and the stop are no errors (no traceback, no lost task result).
    assert [line for line in lines if line["level"] == "ERROR"] == []
    completed = [line for line in lines if "SUCCEEDED by its plugin" in line["message"]]
    assert len(completed) == 1
    assert completed[0]["task_id"] == done_id
    submitted = {line["task_id"] for line in lines if "submitted" in line["message"]}
    assert submitted == set(ids)
    assert any("signature does not match" in line["message"] for line in lines)
    assert any("refused" in line["message"] and "token" in line["message"] for line in lines)


def _taken_port() -> tuple[socket.socket, int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder, holder.getsockname()[1]


@pytest.mark.parametrize(
    ("option", "code", "message"),
    [
        ("--metrics-port", 1, "cannot serve metrics on 127.0.0.1:{port}"),
        ("--http-port", 2, "cannot serve the console on 127.0.0.1:{port}"),
    ],
)
def test_a_taken_port_fails_at_start_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, code: int, message: str
) -> None:
    """`engine serve --metrics-port P` / `--http-port P` on a port another socket listens on:
    one line naming the address, a non-zero exit, no traceback."""
    holder, port = _taken_port()
    with holder:
        store = tmp_path / "tasks.sqlite3"
        argv = ["engine", "serve", "--port", "0", "--store", str(store), option, str(port)]
        assert main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message.format(port=port) in err
    if option == "--metrics-port":
        assert not store.exists()  # failed before the engine opened its store

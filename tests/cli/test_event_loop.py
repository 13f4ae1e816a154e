"""`--loop asyncio|uvloop`: the serving commands' event loop, and a clear refusal without uvloop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import grpc
import pytest

from asyncplugin.cli import UsageError, main
from asyncplugin.cli.event_loop import check_loop, run_on_loop
from asyncplugin.protocol import decode_payload, encode_payload
from asyncplugin.service import EngineClient
from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc, task_pb2
from tests.cli.conftest import served
from tests.service.daemon_proc import start_daemon_process

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_asyncio_is_the_default_loop() -> None:
    assert run_on_loop(_loop_module(), "asyncio").startswith("asyncio")


def test_uvloop_runs_the_coroutine_on_uvloop() -> None:
    assert run_on_loop(_loop_module(), "uvloop").startswith("uvloop")


def test_missing_uvloop_is_a_usage_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    with pytest.raises(UsageError, match=r"asyncplugin\[uvloop\]"):
        check_loop("uvloop")
    coroutine = _loop_module()
    with pytest.raises(UsageError, match="uvloop"):
        run_on_loop(coroutine, "uvloop")
    coroutine.close()


def test_unknown_loop_is_refused() -> None:
    with pytest.raises(UsageError, match="asyncio, uvloop"):
        check_loop("trio")


def test_serve_without_uvloop_exits_2_before_loading_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    code = main(["serve", "no_such_module:Nothing", "--port", "0", "--loop", "uvloop"])
    assert code == 2
    err = capsys.readouterr().err
    assert "asyncplugin[uvloop]" in err
    assert "no_such_module" not in err  # refused before the plugin was even imported


async def test_serve_on_uvloop_answers_and_exits_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asyncplugin.cli", "serve", "server.echo:Echo", "--port", "0",
        "--loop", "uvloop",
        cwd=REPO_ROOT, env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        match = re.fullmatch(r"serving echo on (127\.0\.0\.1:\d+)\n", line)
        assert match, line
        async with grpc.aio.insecure_channel(match.group(1)) as channel:
            stub = plugin_pb2_grpc.PluginServiceStub(channel)
            request = plugin_pb2.InvokeRequest(data=encode_payload({"hi": 1}))
            response = await stub.Invoke(request, timeout=10)
        assert decode_payload(response.data, dict) == {"echo": {"hi": 1}}
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_engine_serve_on_uvloop_runs_a_task_and_exits_on_sigterm(tmp_path: Path) -> None:
    """`asyncplugin engine serve --loop uvloop`: the daemon serves its API on uvloop (a submit
    through it ends SUCCEEDED) and stops gracefully on SIGTERM."""
    daemon, address = await start_daemon_process(
        tmp_path / "tasks.sqlite3", tmp_path / "daemon.log", "--loop", "uvloop"
    )
    try:
        with served("server.echo:Echo") as target:
            async with EngineClient(address) as client:
                task = await client.submit(target, payload={"hi": 1})
                done = await client.wait(task.task_id)
        assert done.state == task_pb2.TASK_STATE_SUCCEEDED
        os.kill(daemon.pid, signal.SIGTERM)
        assert await daemon.wait(timeout_s=30) == 0
    finally:
        await daemon.kill()


def test_engine_serve_without_uvloop_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    code = main(
        ["engine", "serve", "--store", str(tmp_path / "t.db"), "--port", "0", "--loop", "uvloop"]
    )
    assert code == 2
    assert "asyncplugin[uvloop]" in capsys.readouterr().err
    assert not (tmp_path / "t.db").exists()  # refused before the store was opened

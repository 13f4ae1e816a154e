"""`asyncplugin engine serve` and `engine keygen` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from asyncplugin.cli import main
from asyncplugin.engine import Engine, SqliteStore, StoreError
from asyncplugin.service import EngineClient, read_key_file
from asyncplugin.v1 import task_pb2
from tests.engine.plugins import Job
from tests.pg_server import free_port
from tests.reliability.procs import ROOT
from tests.service.conftest import Serve
from tests.service.daemon_proc import start_daemon_process


def test_keygen_creates_then_rotates_a_key_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert main(["engine", "keygen", "--key-file", str(keys), "--key-id", "old"]) == 0
    assert keys.stat().st_mode & 0o777 == 0o600
    assert main(["engine", "keygen", "--key-file", str(keys), "--key-id", "new"]) == 0
    assert [key.key_id for key in read_key_file(keys)] == ["new", "old"]  # new signs first
    assert main(["engine", "keygen", "--key-file", str(keys), "--key-id", "new"]) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no key"),
        ("k1 not-base64!\n", "line 1: the secret is not base64"),
        ("k1 c2hvcnQ=\n", "at least 32 bytes"),
        ("onlyone\n", "line 1: expected 'KEY_ID SECRET'"),
    ],
)
def test_bad_key_files_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(content)
    argv = ["engine", "serve", "--port", "0", "--store", str(tmp_path / "s.db")]
    assert main([*argv, "--completion-keys", str(keys)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_bad_store_urls_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["engine", "serve", "--port", "0", "--store", "mysql://db/x"]) == 2
    assert "unknown kind 'mysql'" in capsys.readouterr().err
    # A PostgreSQL store where nothing answers: one line naming the host and the cause.
    port = free_port()
    url = f"postgresql://worker:pw@127.0.0.1:{port}/x"
    assert main(["engine", "serve", "--port", "0", "--store", url]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"127.0.0.1:{port}/x" in err
    assert "Connection refused" in err
    assert "pw@" not in err


async def test_daemon_serves_holds_the_store_and_stops_gracefully(
    tmp_path: Path, serve: Serve
) -> None:
    plugin = await serve(Job(forever=True))
    store = tmp_path / "tasks.sqlite3"
    daemon, address = await start_daemon_process(store, tmp_path / "daemon.log")
    try:
        async with EngineClient(address) as client:
            task = await client.submit(plugin.target)
            async for change in client.watch(task.task_id):
                if change.task.state == task_pb2.TASK_STATE_RUNNING:
                    break
        with pytest.raises(StoreError) as held:
            await Engine(store=SqliteStore(store)).start()
        assert f"serving at {address}" in str(held.value)
        assert f"--engine {address}" in str(held.value)
        invoke = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "asyncplugin.cli",
            "invoke",
            plugin.target,
            "--store",
            str(store),
            cwd=ROOT,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        _, err = await asyncio.wait_for(invoke.communicate(), timeout=30)
        assert invoke.returncode == 1
        assert f"--engine {address}" in err.decode()
        os.kill(daemon.pid, signal.SIGTERM)
        assert await daemon.wait(timeout_s=30) == 0
        assert daemon.matching("engine stopped")
    finally:
        await daemon.kill()
    # Restarted on the same store, the daemon resumes the task.
    daemon, address = await start_daemon_process(store, tmp_path / "daemon2.log")
    try:
        async with EngineClient(address) as client:
            before = len(plugin.calls())
            resumed = await client.get(task.task_id)
            assert resumed.state == task_pb2.TASK_STATE_RUNNING
            async for change in client.watch(task.task_id, after_revision=resumed.revision):
                if change.task.revision > resumed.revision:
                    break
            assert len(plugin.calls()) > before
            assert all(call.is_status_check for call in plugin.calls()[before:])
    finally:
        await daemon.kill()

"""Ctrl-C while following a task: no traceback, the task id, and the commands to pick it up."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncplugin.service import SyncEngineClient
from asyncplugin.v1 import task_pb2
from tests.cli.conftest import Daemon, cli_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LONG = json.dumps({"duration_s": 120})


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("engine")
    daemon = Daemon(folder / "tasks.sqlite3", folder / "daemon.log")
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def _interrupt(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Waits for the first JSON line (it is following), sends SIGINT; returns the first line's
    task id and everything on stderr."""
    assert process.stdout is not None
    assert process.stderr is not None
    first = json.loads(process.stdout.readline())
    task_id: str = (first.get("task") or first)["task_id"]
    process.send_signal(signal.SIGINT)
    err = process.stderr.read()
    process.stdout.read()
    assert process.wait(timeout=30) == 130, err
    assert "Traceback" not in err, err
    assert "EngineClosed" not in err
    return task_id, err


def test_ctrl_c_during_invoke_watch_in_process_names_the_task_and_how_to_resume(
    slow_job_target: str, tmp_path: Path
) -> None:
    store = tmp_path / "t.db"
    process = cli_process(
        "invoke", slow_job_target, "--watch", "--data", LONG, "--store", str(store), "-o", "json"
    )
    task_id, err = _interrupt(process)
    assert f"interrupted: task {task_id} is recorded in {store}, and no engine polls it now" in err
    assert f"asyncplugin engine serve --store {store}" in err
    assert f"asyncplugin tasks watch {task_id} --engine HOST:PORT" in err
    assert f"asyncplugin tasks cancel {task_id} --engine HOST:PORT" in err


def test_ctrl_c_during_invoke_watch_on_an_engine_leaves_the_task_running(
    engine: Daemon, slow_job_target: str
) -> None:
    at = ("--engine", engine.address)
    process = cli_process("invoke", slow_job_target, *at, "--watch", "--data", LONG, "-o", "json")
    task_id, err = _interrupt(process)
    assert f"interrupted: task {task_id} goes on in the engine at {engine.address}" in err
    assert f"asyncplugin tasks watch {task_id} --engine {engine.address}" in err
    assert f"asyncplugin tasks cancel {task_id} --engine {engine.address}" in err
    with SyncEngineClient(engine.address) as client:
        assert client.get(task_id).state == task_pb2.TASK_STATE_RUNNING
        client.cancel(task_id)


def test_ctrl_c_during_tasks_watch_says_the_task_goes_on(
    engine: Daemon, slow_job_target: str
) -> None:
    with SyncEngineClient(engine.address) as client:
        task_id = client.submit(slow_job_target, payload={"duration_s": 120}).task_id
        try:
            process = cli_process(
                "tasks", "watch", task_id[:9], "--engine", engine.address, "-o", "json"
            )
            watched, err = _interrupt(process)
            assert watched == task_id
            assert (
                f"stopped watching task {task_id}; it goes on. Follow it again: asyncplugin tasks "
                f"watch {task_id} --engine {engine.address}"
            ) in err
            assert client.get(task_id).state == task_pb2.TASK_STATE_RUNNING
        finally:
            client.cancel(task_id)

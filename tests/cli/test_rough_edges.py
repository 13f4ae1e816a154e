"""The rough edges of the command line, each fixed and kept fixed: one-line errors instead of
tracebacks, hints that name the fix, and tables that show what the plugin said."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path

import pytest
from google.protobuf import json_format, struct_pb2
from rich.console import Console

from asyncplugin.cli import main
from asyncplugin.cli.progress import tasks_table
from asyncplugin.engine import SqliteStore, TaskRecord
from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.protocol import TaskState
from asyncplugin.service.convert import task_to_proto
from asyncplugin.v1 import task_pb2
from tests.cli.conftest import cli

FAST = ["--initial-interval", "0.1", "--min-interval", "0.05", "--max-interval", "0.2"]
INVOKE = "/asyncplugin.v1.PluginService/Invoke"
UNREACHABLE = "127.0.0.1:9"  # the discard port: nothing listens on loopback


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


# -- invoke ------------------------------------------------------------------------------------


def test_a_bare_method_name_is_resolved_or_refused_in_one_line(
    slow_job_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--method Invoke` (once a ValueError traceback) runs the one method of that name; a name
    the plugin lacks is one line listing what it offers."""
    store = str(tmp_path / "t.db")
    argv = ["invoke", slow_job_target, "--data", '{"duration_s": 0}', "--store", store, *FAST]
    assert main([*argv, "--method", "Invoke"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["state"] == "SUCCEEDED"
    assert main([*argv, "--method", "Transcribe"]) == 2
    err = _one_line_error(capsys)
    assert f"--method must be a full method path like '{INVOKE}', got 'Transcribe'" in err
    assert f"the plugin offers {INVOKE}" in err
    assert f"asyncplugin describe {slow_job_target}" in err


def test_a_method_without_its_leading_slash_is_accepted(
    slow_job_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "t.db")
    argv = ["invoke", slow_job_target, "--data", '{"duration_s": 0}', "--store", store, *FAST]
    assert main([*argv, "--method", INVOKE.lstrip("/")]) == 0
    capsys.readouterr()
    assert main(["tasks", "list", "--store", store, "-o", "json"]) == 0
    [task] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert task["method"] == INVOKE


def test_a_method_the_plugin_does_not_offer_is_refused_before_recording(
    slow_job_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "t.db"
    code = main(["invoke", slow_job_target, "--method", "/x.Y/Z", "--store", str(store)])
    assert code == 2
    err = _one_line_error(capsys)
    assert f"has no method /x.Y/Z; it offers {INVOKE}" in err
    assert not store.exists()


# -- serve -------------------------------------------------------------------------------------


@pytest.fixture
def plugin_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of plugin modules with names no other test imports; the current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_serve_of_a_module_whose_import_fails_is_one_line(
    plugin_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The module's own error is named with where it happened, not shown as a traceback."""
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (plugin_folder / f"{name}.py").write_text("import os\nRATE = 1 / 0\n")
    assert main(["serve", f"{name}:Plugin", "--port", "0"]) == 2
    err = _one_line_error(capsys)
    assert err == (
        f"asyncplugin serve: error: importing module '{name}' failed: ZeroDivisionError: "
        f"division by zero (at {name}.py:2)"
    )


def test_serve_of_a_module_missing_a_dependency_is_one_line(
    plugin_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"needs_{uuid.uuid4().hex[:8]}"
    (plugin_folder / f"{name}.py").write_text("import no_such_dependency_here\n")
    assert main(["serve", f"{name}:Plugin", "--port", "0"]) == 2
    err = _one_line_error(capsys)
    assert "ModuleNotFoundError: No module named 'no_such_dependency_here'" in err
    assert f"(at {name}.py:1)" in err


def test_serve_of_a_file_name_hints_to_drop_py(
    plugin_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "render.py:Renderer", "--port", "0"]) == 2
    assert "drop the '.py'" in _one_line_error(capsys)
    assert main(["serve", "plugins/render.py:Renderer", "--port", "0"]) == 2
    assert "plugins.render:Renderer" in _one_line_error(capsys)


@pytest.mark.parametrize("command", [["serve", "server.slow_job:SlowJob"], ["engine", "serve"]])
def test_a_taken_port_is_one_line_without_grpc_s_own_log(
    tmp_path: Path, command: list[str]
) -> None:
    """Checked before gRPC binds, so gRPC's C-level log line never reaches stderr; exit 1, as
    when gRPC itself cannot bind."""
    store = ["--store", str(tmp_path / "t.db")] if command[0] == "engine" else []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli(*command, *store, "--port", str(port))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"asyncplugin {command[0]}: error: cannot listen on 127.0.0.1:{port}: the port is "
        "already in use (another server?); choose another --port, or --port 0 for a free one"
    ]


# -- tables ------------------------------------------------------------------------------------


def _task(
    state: task_pb2.TaskState.ValueType,
    *,
    progress: task_pb2.Progress | None = None,
    message: str = "",
    next_check_in_s: float | None = None,
) -> engine_pb2.Task:
    task = engine_pb2.Task(
        task_id=uuid.uuid4().hex,
        state=state,
        status_message=message,
    )
    task.create_time.FromNanoseconds(time.time_ns())
    if progress is not None:
        task.progress.CopyFrom(progress)
    if next_check_in_s is not None:
        task.next_check_time.FromNanoseconds(int((time.time() + next_check_in_s) * 1e9))
    return task


def _render(*tasks: engine_pb2.Task, width: int = 160, polled: bool = True) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(tasks_table(tasks, now=time.time(), polled=polled))
    return console.export_text()


def test_the_watch_row_shows_the_plugin_s_stage_whole() -> None:
    """Once cut to "97% rend"; the words stay whole, and long ones fold instead of vanishing."""
    progress = task_pb2.Progress(fraction=0.97, stage="rendering")
    text = _render(_task(task_pb2.TASK_STATE_RUNNING, progress=progress))
    assert "97% rendering" in text
    long_stage = task_pb2.Progress(fraction=0.5, done=3, total=7, stage="transcoding " * 6)
    narrow = _render(_task(task_pb2.TASK_STATE_RUNNING, progress=long_stage), width=100)
    assert "50% 3/7" in narrow
    assert narrow.count("transcoding") == 6


def test_an_ended_row_does_not_keep_the_last_running_message() -> None:
    done = _task(
        task_pb2.TASK_STATE_SUCCEEDED,
        progress=task_pb2.Progress(fraction=0.97, stage="rendering"),
        message="almost there",
    )
    text = _render(done)
    assert "SUCCEEDED" in text
    assert "almost there" not in text
    assert "97%" not in text


def test_an_orphaned_running_task_is_overdue_and_says_no_engine_polls_it() -> None:
    """Once "in 0.0s" forever."""
    late = _task(task_pb2.TASK_STATE_RUNNING, next_check_in_s=-312)
    orphaned = _render(late, polled=False)
    assert "overdue 5m12s, no engine polling" in orphaned
    assert "no engine is polling this store" in orphaned
    assert "in 0.0s" not in orphaned
    polled = _render(late, polled=True)
    assert "overdue 5m12s" in polled
    assert "no engine" not in polled
    assert "in 3.0s" in _render(_task(task_pb2.TASK_STATE_RUNNING, next_check_in_s=3.04))


# -- tasks show and list on a store ------------------------------------------------------------


def _record(state: TaskState, **fields: object) -> TaskRecord:
    now = time.time()
    values: dict[str, object] = {
        "task_id": uuid.uuid4().hex,
        "target": UNREACHABLE,
        "method": INVOKE,
        "state": state,
        "payload": b"",
        "idempotency_key": uuid.uuid4().hex,
        "create_time": now - 600,
        "update_time": now - 300,
        "revision": 2,
    }
    values.update(fields)
    return TaskRecord(**values)  # type: ignore[arg-type]


def _store_with(path: Path, *records: TaskRecord) -> None:
    async def write() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            for record in records:
                await store.create(record)
        finally:
            await store.close()

    asyncio.run(write())


def test_tasks_show_prints_the_result_decoded_and_progress_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once "93 bytes" and `Progress(fraction=0.42, ...)`."""
    result = struct_pb2.Struct()
    result.update({"answer": 42, "words": ["a", "b"]})
    done = _record(TaskState.SUCCEEDED, result=result.SerializeToString(), end_time=time.time() - 1)
    status = task_pb2.Task(
        state=task_pb2.TASK_STATE_RUNNING,
        progress=task_pb2.Progress(fraction=0.42, done=3, total=7, stage="rendering"),
        status_message="frame 3 of 7",
    )
    running = _record(
        TaskState.RUNNING, status=status.SerializeToString(), next_check_time=time.time() + 30
    )
    store = tmp_path / "t.db"
    _store_with(store, done, running)
    assert (
        main(["tasks", "show", done.task_id, "--store", str(store), "--connect-timeout", "1"]) == 0
    )
    shown = capsys.readouterr().out
    assert '"answer": 42' in shown
    assert "bytes" not in shown.split("payload")[1].split("\n", 1)[1]  # the result is not "N bytes"
    assert main(["tasks", "show", running.task_id[:10], "--store", str(store)]) == 0
    shown = capsys.readouterr().out
    assert "42% 3/7 rendering" in shown
    assert "frame 3 of 7" in shown
    assert "Progress(" not in shown


def test_tasks_list_tells_a_task_nobody_polls_from_one_an_engine_will_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "t.db"
    late = _record(TaskState.RUNNING, next_check_time=time.time() - 3 * 3600 - 60)
    _store_with(store, late)
    assert main(["tasks", "list", "--store", str(store)]) == 0
    assert "overdue 3h01m, no engine polling" in capsys.readouterr().out

    async def list_while_claimed() -> None:
        holder = SqliteStore(store)
        await holder.open()
        await holder.claim()
        try:
            assert await asyncio.to_thread(main, ["tasks", "list", "--store", str(store)]) == 0
        finally:
            await holder.close()

    asyncio.run(list_while_claimed())
    listed = capsys.readouterr().out
    assert "overdue 3h01m" in listed
    assert "no engine" not in listed


def test_a_second_invoke_on_a_busy_store_names_the_flags_that_fix_it(
    slow_job_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "t.db"
    argv = ["invoke", slow_job_target, "--data", '{"duration_s": 0}', "--store", str(store)]

    async def invoke_while_claimed(note: str | None) -> int:
        holder = SqliteStore(store)
        await holder.open()
        await holder.claim()
        if note is not None:
            await holder.announce(note)
        try:
            code: int = await asyncio.to_thread(main, argv)
            return code
        finally:
            await holder.close()

    assert asyncio.run(invoke_while_claimed(None)) == 1
    err = _one_line_error(capsys)
    assert "another engine is using this task store" in err
    assert "give another --store" in err
    assert "asyncplugin engine serve" in err
    assert "--engine" in err
    assert asyncio.run(invoke_while_claimed("engine-address=127.0.0.1:7777")) == 1
    assert "submit through it with --engine 127.0.0.1:7777" in _one_line_error(capsys)


def test_the_store_reader_and_the_daemon_convert_alike(tmp_path: Path) -> None:
    """`tasks show -o json` on a store prints task_to_proto's JSON mapping with proto names."""
    record = _record(TaskState.RUNNING, next_check_time=time.time() + 5)
    store = tmp_path / "t.db"
    _store_with(store, record)
    done = cli("tasks", "show", record.task_id, "--store", str(store), "-o", "json")
    assert done.returncode == 0, done.stderr
    expected = json_format.MessageToDict(
        task_to_proto(record, []), preserving_proto_field_name=True
    )
    assert json.loads(done.stdout) == expected

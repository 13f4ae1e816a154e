"""`asyncplugin tasks list|show` only read the store: no WAL switch, no schema, no write."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from asyncplugin.cli import main
from asyncplugin.engine import SqliteStore, TaskRecord
from asyncplugin.protocol import TaskState
from tests.cli.conftest import ROOT


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _make_store(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.create(
        TaskRecord(
            task_id="task-1",
            target="127.0.0.1:1",
            method="/asyncplugin.v1.PluginService/Invoke",
            state=TaskState.RUNNING,
            payload=b"",
            idempotency_key="key-1",
            create_time=100.0,
            update_time=100.0,
            next_check_time=160.0,
        )
    )
    await store.close()


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them unless its
    DAC-override capabilities are dropped)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a chmod cannot make a folder read-only")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_unprivileged(), sys.executable, "-m", "asyncplugin.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


@pytest.mark.parametrize("action", [["list"], ["show", "task-1"]])
async def test_tasks_reads_a_store_in_a_read_only_folder(tmp_path: Path, action: list[str]) -> None:
    """A store in a folder nobody may write (a backup, a read-only mount) is listed and shown,
    where opening it for writing failed "attempt to write a readonly database"; the file and
    the folder are unchanged."""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "tasks.db"
    await _make_store(path)
    before = _digest(path)
    files = sorted(p.name for p in folder.iterdir())
    folder.chmod(0o555)
    try:
        done = _cli("tasks", *action, "--store", str(path))
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert "task-1" in done.stdout
    assert "RUNNING" in done.stdout
    assert _digest(path) == before
    assert sorted(p.name for p in folder.iterdir()) == files


def test_tasks_on_an_empty_file_is_a_one_line_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty file does not gain a schema: `tasks list` says it holds no task store."""
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    assert main(["tasks", "list", "--store", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"asyncplugin tasks: error: {path}: not a task store: no task store schema (an engine "
        "or 'asyncplugin invoke' creates it)"
    )
    assert path.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_tasks_leaves_the_database_file_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listing and showing read the engine's file without changing a byte of it (nor its
    journal mode or schema version)."""
    path = tmp_path / "tasks.db"
    asyncio.run(_make_store(path))
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = DELETE")  # as a file copied without its engine
    before = _digest(path)
    assert main(["tasks", "list", "--store", str(path)]) == 0
    assert main(["tasks", "show", "task-1", "--store", str(path)]) == 0
    assert "task-1" in capsys.readouterr().out
    assert _digest(path) == before
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

"""A full disk or a read-only store: a clear StoreError, no new work, and nothing recorded lost.

Four ways the store fails, two in the test's process and two in an engine process of its own:
  - the file reaches its size cap (`PRAGMA max_page_count`): SQLite fails the write with
    SQLITE_FULL, exactly as on a full disk;
  - the file turns read-only under a running engine (`PRAGMA query_only`): SQLITE_READONLY;
  - a real read-only file (chmod 0444; as root the engine process runs without
    CAP_DAC_OVERRIDE, through setpriv, so the permission bits bind it);
  - a real failed write: the engine process may not write past 256 KiB (RLIMIT_FSIZE), so the
    kernel fails SQLite's write with EFBIG (SQLITE_IOERR_WRITE).
Each time the engine must raise StoreError naming the file and the cause, refuse new work
(submit raises), wake its waiters with the error, send no further calls, and leave the file as
it was last committed: an engine started again on it finishes every task it had accepted.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from asyncplugin.engine import Engine, FakeClock, SqliteStore, StoreError, TaskUpdate
from asyncplugin.protocol import TaskState
from tests.engine.conftest import MakeEngine, Serve
from tests.engine.plugins import Job
from tests.reliability.invariants import history_problems
from tests.reliability.procs import Child


class CappedStore(SqliteStore):
    """A SqliteStore whose file may grow by `extra_pages` pages only (PRAGMA max_page_count,
    set on the engine's own connection): past that, SQLite fails writes with SQLITE_FULL."""

    def __init__(self, path: Path, *, extra_pages: int) -> None:
        super().__init__(path)
        self.extra_pages = extra_pages

    async def open(self) -> None:
        await super().open()
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        self._conn.execute(f"PRAGMA max_page_count = {pages + self.extra_pages}")


async def _settle() -> None:
    """Lets the in-process plugin and the engine run a few loop turns (bounded)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def _finish_on_fresh_engine(make_engine: MakeEngine, path: Path, ids: list[str]) -> list[str]:
    """Starts a new engine on the repaired file and waits for `ids`; returns history problems."""
    engine = await make_engine(store=SqliteStore(path))
    records = await asyncio.wait_for(asyncio.gather(*(engine.wait(i) for i in ids)), timeout=60)
    assert Counter(r.state for r in records) == {TaskState.SUCCEEDED: len(ids)}
    return [p for i in ids for p in history_problems(await engine.checks(i))]


async def test_full_disk_stops_the_engine_and_loses_nothing(
    make_engine: MakeEngine, serve: Serve, clock: FakeClock, tmp_path: Path
) -> None:
    """The store fills up mid-run (SQLITE_FULL): waiters get StoreError naming the file, submit
    raises it, no call is sent any more; a new engine on the file finishes all 40 tasks."""
    plugin = await serve(Job(checks=10))
    path = tmp_path / "tasks.db"
    engine = await make_engine(store=CappedStore(path, extra_pages=12))
    ids = [await engine.submit(plugin.target, payload={"i": i}) for i in range(40)]
    with pytest.raises(StoreError) as failed:
        await asyncio.gather(*(engine.wait(i) for i in ids))
    message = str(failed.value)
    assert str(path) in message
    assert "SQLITE_FULL" in message
    assert "full" in message
    assert engine.store_error is failed.value
    with pytest.raises(StoreError, match="takes no new work"):
        await engine.submit(plugin.target)
    with pytest.raises(StoreError):
        await engine.wait(ids[0])
    await _settle()
    calls = len(plugin.requests)
    clock.advance(600.0)  # ten minutes pass: nothing is sent any more
    await _settle()
    assert len(plugin.requests) == calls
    await engine.stop()
    assert await _finish_on_fresh_engine(make_engine, path, ids) == []


async def test_store_turning_read_only_stops_the_engine(
    make_engine: MakeEngine, serve: Serve, clock: FakeClock, tmp_path: Path
) -> None:
    """The file turns read-only under a running engine (SQLITE_READONLY): same promises."""
    plugin = await serve(Job(checks=5))
    path = tmp_path / "tasks.db"
    store = SqliteStore(path)
    hold = clock.busy()
    hold.__enter__()  # simulated time stands still while the file turns read-only
    engine = await make_engine(store=store)
    ids = [await engine.submit(plugin.target) for _ in range(10)]
    store._conn.execute("PRAGMA query_only = ON")
    hold.__exit__(None, None, None)
    with pytest.raises(StoreError) as failed:
        await asyncio.gather(*(engine.wait(i) for i in ids))
    assert str(path) in str(failed.value)
    assert "SQLITE_READONLY" in str(failed.value)
    with pytest.raises(StoreError):
        await engine.submit(plugin.target)
    store._conn.execute("PRAGMA query_only = OFF")
    await engine.stop()
    assert await _finish_on_fresh_engine(make_engine, path, ids) == []


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(90)
async def test_read_only_file_is_refused_clearly(
    make_engine: MakeEngine, serve: Serve, tmp_path: Path
) -> None:
    """A chmod 0444 store with 20 RUNNING tasks: the engine process fails at start with
    StoreError naming the file and SQLITE_READONLY, before it sends a single call (the plugin
    sees none) or takes a task, and the file's bytes do not change; made writable again, the
    file resumes all 20 tasks."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: a chmod cannot make a file read-only")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    plugin = await serve(Job(checks=3))
    path = tmp_path / "tasks.db"
    running: set[str] = set()
    all_running = asyncio.Event()

    def on_change(update: TaskUpdate) -> None:
        if update.record.state is TaskState.RUNNING:
            running.add(update.record.task_id)
            if len(running) == 20:
                all_running.set()

    clock = FakeClock(start=time.time())
    first = await make_engine(store=SqliteStore(path), clock=clock, on_change=on_change)
    hold = clock.busy()
    hold.__enter__()  # keep them RUNNING: no simulated time passes until the engine stops
    ids = [await first.submit(plugin.target) for _ in range(20)]
    await asyncio.wait_for(all_running.wait(), timeout=30)
    await first.stop()
    hold.__exit__(None, None, None)
    before = _digest(path)
    calls_before = len(plugin.calls())
    path.chmod(0o444)
    try:
        child = Child(
            "tests.reliability.store_proc",
            "--store",
            str(path),
            "--target",
            plugin.target,
            log=tmp_path / "engine.log",
            launcher=prefix,
        )
        async with child:
            await child.wait_for("DONE", timeout_s=60)
    finally:
        path.chmod(0o600)
    [error] = child.matching("START_ERROR")
    assert str(path) in error
    assert "SQLITE_READONLY" in error
    assert "make it writable" in error
    assert not child.matching("READY")  # the engine never ran
    assert not child.matching("S ")  # no task accepted
    assert len(plugin.calls()) == calls_before  # found before the first call, not after
    assert _digest(path) == before
    assert await _finish_on_fresh_engine(make_engine, path, ids) == []


@pytest.mark.timeout(90)
async def test_failed_disk_write_is_reported_and_nothing_is_lost(
    make_engine: MakeEngine, serve: Serve, tmp_path: Path
) -> None:
    """The engine process may not write past 256 KiB (RLIMIT_FSIZE: the kernel fails the write
    with EFBIG): submit or wait raises StoreError naming the file and the SQLite error; every
    task it had accepted is in the file, and a new engine finishes them all."""
    plugin = await serve(Job(checks=3))
    path = tmp_path / "tasks.db"
    child = Child(
        "tests.reliability.store_proc",
        "--store",
        str(path),
        "--target",
        plugin.target,
        "--tasks",
        "400",
        "--fsize-limit",
        str(256 * 1024),
        log=tmp_path / "engine.log",
    )
    async with child:
        await child.wait_for("DONE", timeout_s=60)
    errors = child.matching("SUBMIT_ERROR") + child.matching("WAIT_ERROR")
    assert errors, child.lines
    assert child.matching("STORE_ERROR"), child.lines
    for line in errors:
        assert str(path) in line
        assert "SQLITE_" in line
    accepted = [line.split()[1] for line in child.matching("S ")]
    assert 0 < len(accepted) < 400
    print(f"accepted {len(accepted)} tasks before the write failed: {errors[0][:160]}")
    assert await _finish_on_fresh_engine(make_engine, path, accepted) == []


async def test_unwritable_store_keeps_engine_reads_working(tmp_path: Path) -> None:
    """After a store failure the engine still answers get/list/checks from what was recorded."""
    path = tmp_path / "tasks.db"
    store = SqliteStore(path)
    async with Engine(store=store, clock=FakeClock()) as engine:
        store._conn.execute("PRAGMA query_only = ON")
        with pytest.raises(StoreError, match="SQLITE_READONLY"):
            await engine.submit("127.0.0.1:1")
        assert await engine.list() == []
        assert engine.store_error is not None

"""The console in a real browser: Playwright driving Debian's headless chromium over the console
that `asyncplugin engine serve --http-port 0` serves.

Everything runs as an operator runs it: the plugin server (the SlowJob example) and the engine
daemon are processes of their own, the daemon on a SQLite store with its console on a free port
(the addresses are read from the daemon's stdout). Tasks are submitted through the command line
(`asyncplugin invoke TARGET --engine ADDRESS --detach`, one process each). The browser
watches the tasks page turn tasks SUCCEEDED without a reload, opens one task and counts one
timeline mark per call the daemon recorded, reveals remote_status_input on request, and cancels
a RUNNING task with the button; `asyncplugin tasks show` then reads CANCELLED from the store
(read-only, while the daemon still holds it).

The screenshots of the tasks page and of a task page are taken here; `make screenshots` writes
them to docs/ (ASYNCPLUGIN_SCREENSHOTS_DIR), any other run to a temporary folder.

Chromium comes from the distribution (`make browser` installs it); Playwright's own browser
download is never used. Without chromium this test fails and says how to install it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect

from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.service import EngineClient
from tests.cli.conftest import ROOT, served
from tests.reliability.procs import Child
from tests.service.daemon_proc import start_daemon_process

# A browser, a daemon and a plugin process start here: 60 s was close at load average 15.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The daemon's polling policy: short intervals that still visibly grow.
POLICY = (
    "--initial-interval", "0.25",
    "--multiplier", "1.6",
    "--max-interval", "1.0",
    "--min-interval", "0.1",
    "--deadline", "120",
    "--check-timeout", "5",
)  # fmt: skip


def chromium_path() -> str:
    """Debian's chromium; the test fails (never skips) without it, naming the fix."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        pytest.fail(
            "chromium is not installed, so the console's browser test cannot run: run "
            "'make browser' (apt-get install --no-install-recommends chromium)",
            pytrace=False,
        )
    return found


def _name(enum: Any, value: int, prefix: str) -> str:
    """An engine.v1 enum value's name without its prefix ("RUNNING" for CHECK_OUTCOME_RUNNING)."""
    return str(enum.Name(value)).removeprefix(prefix)


@dataclass
class DaemonUnderTest:
    """`asyncplugin engine serve --http-port 0` as a process, and a client of its gRPC API."""

    process: Child
    address: str
    url: str
    store: Path
    client: EngineClient

    async def submit(self, target: str, payload: dict[str, Any], **labels: str) -> str:
        """`asyncplugin invoke TARGET --engine ADDR --detach`, as a user types it; returns the
        task id it prints (alone on stdout)."""
        command = [
            sys.executable,
            "-m",
            "asyncplugin.cli",
            "invoke",
            target,
            "--engine",
            self.address,
            "--detach",
            "--data",
            json.dumps(payload),
        ]
        for key, value in labels.items():
            command += ["--label", f"{key}={value}"]
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, err.decode()
        task_id = out.decode().strip()
        assert re.fullmatch(r"[0-9a-f]{32}", task_id), out
        return task_id

    async def calls(self, task_id: str) -> list[tuple[str, str]]:
        """(kind, outcome) of every entry the daemon recorded in the task's check history."""
        task = await self.client.get(task_id)
        return [
            (
                _name(engine_pb2.CallKind, entry.kind, "CALL_KIND_"),
                _name(engine_pb2.CheckOutcome, entry.outcome, "CHECK_OUTCOME_"),
            )
            for entry in task.checks
        ]

    async def reasons(self, task_id: str) -> list[str]:
        """The interval reasons the daemon recorded for the task."""
        task = await self.client.get(task_id)
        return [entry.interval_reason for entry in task.checks if entry.interval_reason]

    def tasks_show(self, task_id: str) -> str:
        """`asyncplugin tasks show ID --store FILE`, as a user types it (read-only)."""
        result = subprocess.run(
            [sys.executable, "-m", "asyncplugin.cli", "tasks", "show", task_id,
             "--store", str(self.store)],
            capture_output=True, text=True, timeout=30, cwd=ROOT,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def plugin_target() -> Iterator[str]:
    """The SlowJob example in its own process (its jobs run on real time)."""
    with served("server.slow_job:SlowJob", ASYNCPLUGIN_FAKE_JOB_S="2") as target:
        yield target


@pytest.fixture
async def under_test(tmp_path: Path) -> AsyncIterator[DaemonUnderTest]:
    store = tmp_path / "tasks.sqlite3"
    log = tmp_path / "daemon.log"
    process, address = await start_daemon_process(
        store, log, *POLICY, "--grace-s", "1", "--http-port", "0"
    )
    try:
        url = (await process.wait_for("console on ", timeout_s=10)).split()[2]
        async with EngineClient(address) as client:
            yield DaemonUnderTest(process, address, url, store, client)
        os.kill(process.pid, signal.SIGTERM)  # the console stops first, then the engine
        assert await process.wait(timeout_s=30) == 0, log.read_text()[-3000:]
    finally:
        await process.kill()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = os.environ.get("ASYNCPLUGIN_SCREENSHOTS_DIR")
    return (ROOT / folder) if folder else tmp_path


async def test_console_in_a_browser(
    under_test: DaemonUnderTest, plugin_target: str, shots: Path
) -> None:
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 760})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on(  # a navigation aborts the event stream and fetches in flight: not a failure
                "requestfailed",
                lambda r: (
                    None
                    if r.failure == "net::ERR_ABORTED"
                    else problems.append(f"{r.url}: {r.failure}")
                ),
            )
            page.on("response", lambda r: problems.append(r.url) if r.status >= 400 else None)
            page.on("pageerror", lambda err: problems.append(str(err)))
            await _scenario(page, under_test, plugin_target, shots)
            assert problems == [], problems  # no script error, no CSP violation
        finally:
            await browser.close()


async def _scenario(page: Page, sut: DaemonUnderTest, target: str, shots: Path) -> None:
    await page.goto(f"{sut.url}/tasks")
    await expect(page.locator("#live-status")).to_have_text("live")
    await page.evaluate("window.__notReloaded = true")

    quick = [
        await sut.submit(target, {"duration_s": d, "hint": False}, batch="nightly")
        for d in (1.2, 1.6, 2.0)
    ]
    failing = await sut.submit(target, {"duration_s": 1.0, "fail": True, "hint": False})
    long = await sut.submit(target, {"duration_s": 600, "hint": False}, team="audio")

    # The rows appear and turn SUCCEEDED live, without a reload.
    for task_id in quick:
        row = page.locator(f"#task-{task_id}")
        await expect(row).to_have_attribute("data-state", "SUCCEEDED", timeout=20_000)
        await expect(row.locator("progress")).to_have_attribute("value", "1.0000")
    await expect(page.locator(f"#task-{failing}")).to_have_attribute("data-state", "FAILED")
    await expect(page.locator(f"#task-{long}")).to_have_attribute("data-state", "RUNNING")
    assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    await page.screenshot(path=str(shots / "console-tasks.png"), animations="disabled")

    # One task: one timeline mark per call the daemon recorded.
    chosen = quick[-1]
    calls = await sut.calls(chosen)
    assert all(kind in ("INITIATE", "CHECK") for kind, _ in calls)
    assert len(calls) >= 4
    await page.click(f"#task-{chosen} td.id a")
    await expect(page.locator("#task-state")).to_have_text("SUCCEEDED")
    marks = page.locator("svg#timeline circle.mark")
    await expect(marks).to_have_count(len(calls))
    outcomes = [await marks.nth(i).get_attribute("data-outcome") for i in range(len(calls))]
    assert outcomes == [outcome for _, outcome in calls]
    for reason in await sut.reasons(chosen):
        gap = page.locator("svg#timeline g.gap title").filter(has_text=reason)
        await expect(gap).to_have_count(1)
    await page.screenshot(
        path=str(shots / "console-task.png"), full_page=True, animations="disabled"
    )

    # remote_status_input is not in the page until asked for.
    await page.goto(f"{sut.url}/tasks/{long}")
    assert "job_id" not in await page.content()
    await page.click("#show-remote-input")
    await expect(page.locator("#remote-input-value")).to_contain_text('"job_id"')

    # Cancel the RUNNING task with the button; the store says CANCELLED.
    await expect(page.locator("#task-state")).to_have_text("RUNNING")
    await page.click("#cancel-button")
    await expect(page.locator("#task-state")).to_have_text("CANCELLED")
    await expect(page.locator("#cancel-button")).to_have_count(0)
    shown = sut.tasks_show(long)
    assert "CANCELLED" in shown
    assert "job_id" not in shown  # hidden there too unless asked

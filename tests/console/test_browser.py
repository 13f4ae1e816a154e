"""The console in a real browser: Playwright driving Debian's headless chromium.

A plugin server runs as its own process (the SlowJob example); an engine on a SQLite store runs
with the console in this test's event loop (`EngineUnderTest`: the one place that changes when
the console is served by `asyncplugin engine serve --http-port` instead). The browser watches the
tasks page turn tasks SUCCEEDED without a reload, opens one task and counts one timeline mark per
recorded call, reveals remote_status_input on request, and cancels a RUNNING task with the
button; `asyncplugin tasks show` then reads CANCELLED from the store.

The screenshots of the tasks page and of a task page are taken here; `make screenshots` writes
them to docs/ (ASYNCPLUGIN_SCREENSHOTS_DIR), any other run to a temporary folder.

Chromium comes from the distribution (`make browser` installs it); Playwright's own browser
download is never used. Without chromium this test fails and says how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect

from asyncplugin.engine import (
    CallKind,
    CheckRecord,
    Engine,
    PollingPolicy,
    SqliteStore,
    TaskOptions,
)
from asyncplugin.service.console import ConsoleServer, start_console
from tests.cli.conftest import ROOT, served

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
POLICY = PollingPolicy(
    initial_interval_s=0.25,
    multiplier=1.6,
    max_interval_s=1.0,
    min_interval_s=0.1,
    jitter=0.1,
    deadline_s=120.0,
    check_timeout_s=5.0,
)


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


@dataclass
class EngineUnderTest:
    """An engine serving the console; submits and reads tasks the way an operator would."""

    engine: Engine
    console: ConsoleServer
    store: Path

    @property
    def url(self) -> str:
        return self.console.url

    async def submit(self, target: str, payload: dict[str, Any]) -> str:
        return await self.engine.submit(target, payload=payload, options=TaskOptions(policy=POLICY))

    async def checks(self, task_id: str) -> list[CheckRecord]:
        return await self.engine.checks(task_id)

    def tasks_show(self, task_id: str) -> str:
        """`asyncplugin tasks show ID` on the store, as a user types it."""
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
async def under_test(tmp_path: Path) -> AsyncIterator[EngineUnderTest]:
    store = tmp_path / "tasks.sqlite3"
    engine = Engine(store=SqliteStore(store), policy=POLICY, shutdown_grace_s=0.5)
    await engine.start()
    console = await start_console(engine, host="127.0.0.1", port=0)
    try:
        yield EngineUnderTest(engine, console, store)
    finally:
        await console.stop()
        await engine.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = os.environ.get("ASYNCPLUGIN_SCREENSHOTS_DIR")
    return (ROOT / folder) if folder else tmp_path


async def test_console_in_a_browser(
    under_test: EngineUnderTest, plugin_target: str, shots: Path
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


async def _scenario(page: Page, sut: EngineUnderTest, target: str, shots: Path) -> None:
    await page.goto(f"{sut.url}/tasks")
    await expect(page.locator("#live-status")).to_have_text("live")
    await page.evaluate("window.__notReloaded = true")

    quick = [await sut.submit(target, {"duration_s": d, "hint": False}) for d in (1.2, 1.6, 2.0)]
    failing = await sut.submit(target, {"duration_s": 1.0, "fail": True, "hint": False})
    long = await sut.submit(target, {"duration_s": 600, "hint": False})

    # The rows appear and turn SUCCEEDED live, without a reload.
    for task_id in quick:
        row = page.locator(f"#task-{task_id}")
        await expect(row).to_have_attribute("data-state", "SUCCEEDED", timeout=20_000)
        await expect(row.locator("progress")).to_have_attribute("value", "1.0000")
    await expect(page.locator(f"#task-{failing}")).to_have_attribute("data-state", "FAILED")
    await expect(page.locator(f"#task-{long}")).to_have_attribute("data-state", "RUNNING")
    assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    await page.screenshot(path=str(shots / "console-tasks.png"), animations="disabled")

    # One task: one timeline mark per recorded call.
    chosen = quick[-1]
    checks = await sut.checks(chosen)
    assert checks
    assert all(c.kind in (CallKind.INITIATE, CallKind.CHECK) for c in checks)
    await page.click(f"#task-{chosen} td.id a")
    await expect(page.locator("#task-state")).to_have_text("SUCCEEDED")
    marks = page.locator("svg#timeline circle.mark")
    await expect(marks).to_have_count(len(checks))
    assert len(checks) >= 4
    outcomes = [await marks.nth(i).get_attribute("data-outcome") for i in range(len(checks))]
    assert outcomes == [str(c.outcome) for c in checks]
    for reason in (c.reason for c in checks if c.reason):
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

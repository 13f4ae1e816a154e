"""The operator's day, end to end, every piece its own process: `asyncplugin engine serve`, a
plugin server, and the command line submitting with --detach, listing, watching, cancelling
and reading results, while the daemon is killed with SIGKILL and restarted on the same store."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Daemon, cli, cli_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

JOBS: dict[str, dict[str, Any]] = {
    "short": {"duration_s": 2, "hint": False},
    "long": {"duration_s": 25},
    "fails": {"duration_s": 2, "fail": True},
    "cancelled": {"duration_s": 120},
}
EXPECTED = {
    "short": ("TASK_STATE_SUCCEEDED", 0),
    "long": ("TASK_STATE_SUCCEEDED", 0),
    "fails": ("TASK_STATE_FAILED", 1),
    "cancelled": ("TASK_STATE_CANCELLED", 1),
    "from_stdin": ("TASK_STATE_SUCCEEDED", 0),
}


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _wait_started(engine: str, ids: dict[str, str], timeout_s: float = 30) -> dict[str, str]:
    """Waits until no task is WAITING (every one was initiated); returns their states."""
    deadline = time.monotonic() + timeout_s
    while True:
        listing = cli("tasks", "list", "--engine", engine, "-o", "json")
        states = {task["task_id"]: task["state"] for task in _json_lines(listing.stdout)}
        if set(states) == set(ids.values()) and "TASK_STATE_WAITING" not in states.values():
            return states
        assert time.monotonic() < deadline, f"not all started: {listing.stdout}"
        time.sleep(0.3)


def _history(entries: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(entry["revision"], entry["kind"], entry.get("check_number", 0)) for entry in entries]


def test_submit_detached_kill_restart_watch_cancel_and_read_results(
    slow_job_target: str, daemon: Daemon, tmp_path: Path
) -> None:
    """Tasks submitted with --detach survive a SIGKILL of the daemon: watchers started before
    the kill reconnect to the restarted daemon and see every task end, each history entry
    exactly once; a cancel and the JSON output of every command work across it."""
    engine = daemon.start()
    at = ("--engine", engine)

    # Submitted side by side (one process each), so the whole batch starts at once.
    submits = {
        name: cli_process(
            "invoke",
            slow_job_target,
            *at,
            "--detach",
            "--data",
            json.dumps(payload),
            "--label",
            f"job={name}",
            "-o",
            "json",
        )
        for name, payload in JOBS.items()
    }
    plain = cli_process("invoke", slow_job_target, *at, "--detach", "--data", "@-")
    out, err = plain.communicate('{"duration_s": 2}', timeout=60)
    assert plain.returncode == 0, err
    assert re.fullmatch(r"[0-9a-f]{32}\n", out)  # the full id, alone on stdout
    ids = {"from_stdin": out.strip()}
    assert f"asyncplugin tasks watch {ids['from_stdin']} --engine {engine}" in err
    for name, process in submits.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        submitted = json.loads(out)
        assert submitted["state"] in ("TASK_STATE_WAITING", "TASK_STATE_RUNNING")
        assert submitted["labels"] == {"job": name}
        assert submitted["name"] == f"tasks/{submitted['task_id']}"
        ids[name] = submitted["task_id"]

    _wait_started(engine, ids)
    labelled = _json_lines(cli("tasks", "list", *at, "--label", "job=long", "-o", "json").stdout)
    assert [task["task_id"] for task in labelled] == [ids["long"]]

    # Watchers follow by prefix from before the kill to the end.
    first: dict[str, str] = {}
    watchers = {
        name: cli_process("tasks", "watch", task_id[:12], *at, "-o", "json")
        for name, task_id in ids.items()
    }
    for name, watcher in watchers.items():
        assert watcher.stdout is not None
        first[name] = watcher.stdout.readline()  # connected: the task as it stands
    running = _json_lines(cli("tasks", "list", *at, "--state", "RUNNING", "-o", "json").stdout)
    assert {ids["long"], ids["cancelled"]} <= {task["task_id"] for task in running}
    daemon.kill()

    # Read from the store with no engine on it, every unfinished row says so: "in 0.3s (no
    # engine)" or "overdue 1.2s, no engine polling", whichever side of its due time the
    # listing falls on.
    orphaned = cli("tasks", "list", "--store", str(daemon.store), "--state", "RUNNING")
    assert orphaned.returncode == 0, orphaned.stderr
    for name in ("long", "cancelled"):
        (row,) = [line for line in orphaned.stdout.splitlines() if ids[name] in line]
        assert re.search(r"\(no engine\)|, no engine polling", row), row
    assert "no engine is polling this store" in orphaned.stdout

    time.sleep(0.5)
    assert daemon.start() == engine  # the same address: watchers reconnect to it

    cancelled = _json(cli("tasks", "cancel", ids["cancelled"][:8], *at, "-o", "json"))
    assert cancelled["task_id"] == ids["cancelled"]
    assert cancelled["state"] == "TASK_STATE_CANCELLED"

    for name, watcher in watchers.items():
        assert watcher.stdout is not None
        assert watcher.stderr is not None
        out = watcher.stdout.read()  # buffered, after the first line (communicate() would not be)
        err = watcher.stderr.read()
        watcher.wait(timeout=30)
        state, code = EXPECTED[name]
        assert "Traceback" not in err, err
        assert watcher.returncode == code, (name, err)
        changes = _json_lines(first[name] + out)
        assert changes[-1]["task"]["state"] == state
        assert all(change["task"]["task_id"] == ids[name] for change in changes)
        revisions = [int(change["task"]["revision"]) for change in changes]
        assert revisions == sorted(set(revisions)), revisions  # no change twice, none back
        shown = _json(cli("tasks", "show", ids[name], *at, "-o", "json"))
        seen = _history([entry for change in changes for entry in change.get("checks", [])])
        # Every entry recorded up to the end the watcher saw, each once, across the restart
        # (the cancel request's own entry may be recorded after the CANCELLED end).
        recorded = [entry for entry in shown["checks"] if int(entry["revision"]) <= revisions[-1]]
        assert seen == _history(recorded), name
        answered = [
            entry
            for entry in shown["checks"]
            if entry["kind"] == "CALL_KIND_INITIATE"
            and entry["outcome"] != "CHECK_OUTCOME_TRANSPORT_RETRY"
        ]
        assert len(answered) == 1, answered  # never initiated again once RUNNING was recorded

    result = _json(cli("tasks", "result", ids["long"], *at, "-o", "json"))
    assert result["state"] == "TASK_STATE_SUCCEEDED"
    assert result["data"]["duration_s"] == 25
    assert result["data"]["job_id"].startswith("job-")
    failed = cli("tasks", "result", ids["fails"], *at, "-o", "json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"]["code"] == "REMOTE_JOB_FAILED"

    # The store file, read without the daemon's help, says exactly what the daemon says.
    through_daemon = _json(cli("tasks", "show", ids["long"], *at, "-o", "json"))
    from_store = _json(
        cli("tasks", "show", ids["long"], "--store", str(daemon.store), "-o", "json")
    )
    assert from_store == through_daemon
    ended = _json_lines(cli("tasks", "list", *at, "-o", "json").stdout)
    assert {task["task_id"]: task["state"] for task in ended} == {
        task_id: EXPECTED[name][0] for name, task_id in ids.items()
    }

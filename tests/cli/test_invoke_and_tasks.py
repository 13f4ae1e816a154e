"""`asyncplugin invoke` and `asyncplugin tasks` against a real plugin process and SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncplugin.cli import main

FAST = ["--initial-interval", "0.1", "--min-interval", "0.05", "--max-interval", "0.2"]


def _last_json(out: str) -> dict[str, object]:
    line = [text for text in out.splitlines() if text.startswith("{")][-1]
    result: dict[str, object] = json.loads(line)
    return result


def test_invoke_polls_to_success_and_records_the_task(
    slow_job_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """invoke drives a RUNNING task through status checks to SUCCEEDED and prints the data."""
    store = str(tmp_path / "tasks.db")
    code = main(
        [
            "invoke",
            slow_job_target,
            "--data",
            '{"duration_s": 0.3, "hint": false}',
            "--store",
            store,
            *FAST,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    result = _last_json(out)
    assert result["state"] == "SUCCEEDED"
    data = result["data"]
    assert isinstance(data, dict)
    assert data["duration_s"] == 0.3

    assert main(["tasks", "list", "--store", store]) == 0
    assert "SUCCEEDED" in capsys.readouterr().out
    assert main(["tasks", "show", str(result["task_id"]), "--store", store]) == 0
    shown = capsys.readouterr().out
    assert "INITIATE" in shown
    assert "CHECK" in shown
    assert "(hidden; --show-remote-input)" in shown


def test_invoke_watch_prints_every_check(
    slow_job_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--watch ends with a check-history table listing each interval and why it was chosen."""
    store = str(tmp_path / "tasks.db")
    code = main(
        [
            "invoke",
            slow_job_target,
            "--watch",
            "--data",
            '{"duration_s": 0.3, "hint": false}',
            "--store",
            store,
            *FAST,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "check history of" in out
    assert "backoff" in out


def test_invoke_reports_a_failed_task_with_its_envelope(
    slow_job_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A task the plugin fails exits 1 and prints the error envelope's code and message."""
    code = main(
        [
            "invoke",
            slow_job_target,
            "--data",
            '{"duration_s": 0.1, "fail": true}',
            "--store",
            str(tmp_path / "t.db"),
            *FAST,
        ]
    )
    result = _last_json(capsys.readouterr().out)
    assert code == 1
    assert result["state"] == "FAILED"
    error = result["error"]
    assert isinstance(error, dict)
    assert error["code"] == "REMOTE_JOB_FAILED"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["invoke", "127.0.0.1:1", "--data", "{nope"], "--data is not valid JSON"),
        (["invoke", "127.0.0.1:1", "--connect-timeout", "0.2"], "cannot reach a gRPC server"),
        (["invoke", "127.0.0.1:1", "--initial-interval", "0.1"], "PollingPolicy needs"),
        (["tasks", "list", "--store", "/nonexistent/tasks.db"], "no task store at"),
    ],
)
def test_bad_command_lines_give_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad --data, an unreachable target, a bad policy or a missing store: exit 2, one line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert message in err
    assert "Traceback" not in err


def test_unknown_task_id_is_a_one_line_error(
    slow_job_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tasks show` of an id the store does not hold exits 2 naming the id."""
    store = str(tmp_path / "tasks.db")
    assert main(["invoke", slow_job_target, "--data", '{"duration_s": 0}', "--store", store]) == 0
    capsys.readouterr()
    assert main(["tasks", "show", "no-such-task", "--store", store]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"asyncplugin tasks: error: NOT_FOUND: no task with id 'no-such-task' in store {store}"
    )

"""`asyncplugin conformance ...` end to end: exit codes, the table, JUnit XML, serve + judge."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from asyncplugin.cli import main
from asyncplugin.conformance.cases import CASES
from asyncplugin.conformance.reference_plugin import ConformancePlugin
from tests.conformance.broken import NoRotation
from tests.conformance.conftest import ROOT, plugin_in_thread, read_first_line, stop_process
from tests.conformance.test_engine_judge import drive_reference_engine


def test_plugin_passes_exit_0_and_writes_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every case passes: exit 0, a PASS table, one JUnit testcase per case, no failure."""
    junit = tmp_path / "conformance.xml"
    with plugin_in_thread(ConformancePlugin()) as target:
        code = main(["conformance", "plugin", target, "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 0
    assert "PASS" in out
    assert "FAIL " not in out
    assert f"{len(CASES)} cases, {len(CASES)} passed, 0 failed" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(CASES))
    assert suite.get("failures") == "0"
    assert [case.get("name") for case in suite.iter("testcase")] == [c.name for c in CASES]
    assert suite.find("testcase/failure") is None


def test_plugin_fails_exit_1_with_named_failures_in_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken plugin: exit 1, FAIL lines naming the requirement, JUnit failure messages."""
    junit = tmp_path / "conformance.xml"
    with plugin_in_thread(NoRotation()) as target:
        code = main(["conformance", "plugin", target, "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL remote-status-input-rotation: REMOTE_STATUS_INPUT_ROTATION:" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "2"
    failures = {
        case.get("name"): case.find("failure")
        for case in suite.iter("testcase")
        if case.find("failure") is not None
    }
    assert set(failures) == {"remote-status-input-rotation", "echo-verification"}
    rotation = failures["remote-status-input-rotation"]
    assert rotation is not None
    assert rotation.get("type") == "REMOTE_STATUS_INPUT_ROTATION"
    assert (rotation.get("message") or "").startswith("REMOTE_STATUS_INPUT_ROTATION: ")
    assert "requirement: Every RUNNING answer" in (rotation.text or "")


def test_only_runs_the_named_cases_and_rejects_unknown_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--only selects cases; an unknown name is a one-line usage error (exit 2)."""
    junit = tmp_path / "only.xml"
    with plugin_in_thread(NoRotation()) as target:
        code = main(
            ["conformance", "plugin", target, "--only", "sync-answer", "--junit", str(junit)]
        )
        assert code == 0
        names = [case.get("name") for case in ET.parse(junit).getroot().iter("testcase")]
        assert names == ["sync-answer"]
        assert main(["conformance", "plugin", target, "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--only: no case named nope; cases: sync-answer" in err


def test_an_unreachable_target_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: one line, exit 2, no table."""
    code = main(["conformance", "plugin", "127.0.0.1:1", "--connect-timeout", "0.2"])
    assert code == 2
    assert "cannot reach a gRPC server at 127.0.0.1:1" in capsys.readouterr().err


def test_scenarios_prints_the_engine_payloads(capsys: pytest.CaptureFixture[str]) -> None:
    """One JSON object per engine scenario, with its bytes in base64."""
    assert main(["conformance", "scenarios"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["name"] for line in lines][:2] == ["engine-sync", "engine-rotating"]
    assert all(line["data_base64"] is not None and line["how"] for line in lines)


def test_serve_records_and_judge_engine_passes_our_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`conformance serve --record` in a subprocess, our engine against it, then
    `judge-engine FILE` exits 0; a tampered file exits 1 naming the rule."""
    record = tmp_path / "observations.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncplugin.cli", "conformance", "serve", "--port", "0"]
        + ["--record", str(record)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
    )
    try:
        line = read_first_line(process, 20.0)
        assert line.startswith("serving conformance on "), line
        asyncio.run(drive_reference_engine(line.split()[-1]))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        stop_process(process)
    assert process.returncode == 0
    assert main(["conformance", "judge-engine", str(record), "--min-interval", "0.015"]) == 0
    assert "PASSED" in capsys.readouterr().out

    lines = record.read_text().splitlines()
    check_2 = next(
        line
        for line in lines
        if '"scenario": "engine-rotating"' in line and '"checkNumber": 2' in line
    )
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join([*lines, check_2]) + "\n")  # check 2 sent twice
    assert main(["conformance", "judge-engine", str(tampered), "--min-interval", "0"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "FAIL CHECK_NUMBER_NOT_SEQUENTIAL: task " in out
    assert "check 2 was sent again" in out


def test_judge_engine_reports_a_bad_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line that is not an Observation: exit 2 naming the file and line."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"taskId": "t"}\nnot json\n')
    assert main(["conformance", "judge-engine", str(bad)]) == 2
    assert f"{bad}:2: not an Observation" in capsys.readouterr().err

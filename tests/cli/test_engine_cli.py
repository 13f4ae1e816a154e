"""The command line against a running engine daemon (`asyncplugin engine serve` in its own
process) and, read-only, against the daemon's store file: ids and prefixes, filters, JSON
output, results through reflection, describe, and the refusals."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncplugin.cli import main
from asyncplugin.service import SyncEngineClient
from tests.cli.conftest import Daemon

pytestmark = pytest.mark.timeout(120)

TRANSCRIBE = "/asyncplugin.examples.v1.TranscriberService/Transcribe"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the module, on its own store."""
    folder = tmp_path_factory.mktemp("engine")
    daemon = Daemon(folder / "tasks.sqlite3", folder / "daemon.log")
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def quick_tasks(engine: Daemon, slow_job_target: str) -> list[str]:
    """17 finished tasks (so two of them share a first hex digit), labelled batch=quick."""
    with SyncEngineClient(engine.address) as client:
        ids = [
            client.submit(
                slow_job_target, payload={"duration_s": 0}, labels={"batch": "quick"}
            ).task_id
            for _ in range(17)
        ]
        for task_id in ids:
            client.wait(task_id)
    return ids


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No request log on stderr (the test reads stderr)."""


@pytest.fixture
def http_target() -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1:0: it answers, but not gRPC."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_any_unique_prefix_is_accepted_and_others_are_refused_alike(
    engine: Daemon, quick_tasks: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Daemon and store: a unique prefix finds the task; an ambiguous one is INVALID_ARGUMENT
    naming the candidates; an unknown one is NOT_FOUND; each one line, exit 2."""
    by_digit: dict[str, list[str]] = {}
    for task_id in quick_tasks:
        by_digit.setdefault(task_id[0], []).append(task_id)
    shared = next(digit for digit, ids in by_digit.items() if len(ids) > 1)
    sources = (["--engine", engine.address], ["--store", str(engine.store)])
    for source in sources:
        unique = quick_tasks[0][:10]
        assert main(["tasks", "show", unique, *source, "-o", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["task_id"] == quick_tasks[0]

        assert main(["tasks", "show", shared, *source]) == 2
        err = _err(capsys)
        assert f"INVALID_ARGUMENT: task id prefix '{shared}' matches" in err
        for candidate in sorted(by_digit[shared])[:10]:
            assert candidate in err

        assert main(["tasks", "watch", "nosuchtask", *source]) == 2
        assert "NOT_FOUND: no task with id 'nosuchtask' in " in _err(capsys)


def test_list_filters_by_state_target_label_and_age_with_one_json_line_per_task(
    engine: Daemon,
    quick_tasks: list[str],
    slow_job_target: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def listed(source: list[str], *filters: str) -> set[str]:
        assert main(["tasks", "list", *source, "--limit", "500", "-o", "json", *filters]) == 0
        return {task["task_id"] for task in _lines(capsys.readouterr().out)}

    for at in (["--engine", engine.address], ["--store", str(engine.store)]):
        source = at

        quick = set(quick_tasks)
        assert quick <= listed(source, "--state", "SUCCEEDED", "--label", "batch=quick")
        assert listed(source, "--label", "batch=quick") == quick
        assert not listed(
            source, "--label", "batch=quick", "--state", "RUNNING", "--state", "FAILED"
        )
        assert quick <= listed(source, "--target", slow_job_target)
        assert not listed(source, "--target", "127.0.0.1:9")
        assert quick <= listed(source, "--newer-than", "1h")
        assert not listed(source, "--older-than", "1h")
        assert len(listed(source, "--limit", "3")) == 3

        assert main(["tasks", "list", *source, "--newer-than", "soon"]) == 2
        assert "--newer-than 'soon' is not an age like 30s" in _err(capsys)
        assert main(["tasks", "list", *source, "--label", "novalue"]) == 2
        assert "--label 'novalue' is not KEY=VALUE" in _err(capsys)


def test_daemon_and_store_print_the_same_json(
    engine: Daemon, quick_tasks: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    documents = []
    for source in (["--engine", engine.address], ["--store", str(engine.store)]):
        assert main(["tasks", "show", quick_tasks[1], *source, "-o", "json"]) == 0
        documents.append(json.loads(capsys.readouterr().out))
    through_daemon, from_store = documents
    assert through_daemon == from_store
    assert through_daemon["state"] == "TASK_STATE_SUCCEEDED"
    assert {entry["kind"] for entry in through_daemon["checks"]} >= {"CALL_KIND_INITIATE"}


def test_typed_results_are_decoded_through_reflection_or_printed_raw(
    engine: Daemon, transcriber_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    at = ["--engine", engine.address]
    data = '{"audioUrl": "https://example.com/talk.wav"}'
    assert main(["invoke", transcriber_target, *at, "--method", TRANSCRIBE, "--data", data]) == 0
    outcome = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert outcome["state"] == "SUCCEEDED"
    assert outcome["data"]["wordCount"] > 0
    task_id = outcome["task_id"]

    assert main(["tasks", "result", task_id, *at]) == 0
    assert json.loads(capsys.readouterr().out) == outcome["data"]
    assert main(["tasks", "result", task_id, *at, "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["result_type"] == "asyncplugin.examples.v1.Transcript"
    assert document["data"] == outcome["data"]

    assert main(["tasks", "show", task_id, *at, "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["result_type"] == "asyncplugin.examples.v1.Transcript"

    assert main(["tasks", "show", task_id, *at]) == 0
    table = capsys.readouterr().out
    assert "result (asyncplugin.examples.v1.Transcript)" in table
    assert '"wordCount"' in table


def test_result_raw_is_the_bytes_and_an_unfinished_task_has_none(
    engine: Daemon,
    quick_tasks: list[str],
    slow_job_target: str,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    at = ["--engine", engine.address]
    with SyncEngineClient(engine.address) as client:
        expected = client.get(quick_tasks[2]).result
        long = client.submit(slow_job_target, payload={"duration_s": 60}).task_id
        try:
            assert main(["tasks", "result", quick_tasks[2], *at, "-o", "raw"]) == 0
            assert capfdbinary.readouterr().out == expected
            assert main(["tasks", "result", long, *at]) == 2
            err = capfdbinary.readouterr().err.decode()
            assert f"task {long} is " in err
            assert f"no result yet; follow it with: asyncplugin tasks watch {long}" in err
        finally:
            client.cancel(long)
    assert main(["tasks", "result", long, *at]) == 1
    assert f"task {long} CANCELLED: it has no result" in capfdbinary.readouterr().err.decode()


def test_cancel_needs_a_daemon_and_names_the_flag(
    engine: Daemon, quick_tasks: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tasks", "cancel", quick_tasks[0], "--store", str(engine.store)]) == 2
    err = _err(capsys)
    assert "tasks cancel needs a running engine" in err
    assert "--engine HOST:PORT" in err
    at = ["--engine", engine.address]
    assert main(["tasks", "cancel", quick_tasks[0], *at, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "TASK_STATE_SUCCEEDED"  # unchanged


def test_describe_lists_services_and_payload_types(
    transcriber_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["describe", transcriber_target]) == 0
    out = capsys.readouterr().out
    assert TRANSCRIBE in out
    assert "payload: asyncplugin.examples.v1.TranscribeInput" in out
    assert "result: asyncplugin.examples.v1.Transcript" in out
    assert "grpc.health.v1.Health" not in out
    assert main(["describe", transcriber_target, "--all", "-o", "json"]) == 0
    described = json.loads(capsys.readouterr().out)
    names = {service["name"] for service in described["services"]}
    assert {"asyncplugin.examples.v1.TranscriberService", "grpc.health.v1.Health"} <= names
    [method] = [
        method
        for service in described["services"]
        for method in service["methods"]
        if method["path"] == TRANSCRIBE
    ]
    assert method["input_type"] == "asyncplugin.examples.v1.TranscribeRequest"
    assert method["payload_type"] == "asyncplugin.examples.v1.TranscribeInput"


def test_a_target_that_does_not_speak_grpc_is_named_so(
    engine: Daemon, http_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not "unreachable": it answers, it is the wrong kind of server."""
    commands = [
        ["invoke", http_target, "--store", str(tmp_path / "t.db")],
        ["invoke", http_target, "--engine", engine.address, "--detach"],
        ["describe", http_target],
        ["tasks", "list", "--engine", http_target],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = _err(capsys)
        assert (
            f"NOT_A_GRPC_ENDPOINT: {http_target} accepts connections but does not speak gRPC" in err
        )
    assert not (tmp_path / "t.db").exists()


def test_data_from_a_file_and_from_stdin(
    engine: Daemon,
    slow_job_target: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    at = ["--engine", engine.address]
    payload = tmp_path / "payload.json"
    payload.write_text('{"duration_s": 0, "from": "file"}')
    assert main(["invoke", slow_job_target, *at, "--data", f"@{payload}"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["state"] == "SUCCEEDED"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO('{"duration_s": 0}'))
    assert main(["invoke", slow_job_target, *at, "--data", "@-", "--detach"]) == 0
    assert len(capsys.readouterr().out.strip()) == 32

    assert main(["invoke", slow_job_target, *at, "--data", f"@{tmp_path / 'missing.json'}"]) == 2
    assert "missing.json: No such file or directory" in _err(capsys)
    payload.write_text("{broken")
    assert main(["invoke", slow_job_target, *at, "--data", f"@{payload}"]) == 2
    assert f"--data (@{payload}) is not valid JSON" in _err(capsys)


def test_bad_submissions_are_refused_by_the_daemon_naming_the_field(
    engine: Daemon, slow_job_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing recorded: the labelled listing stays empty."""
    at = ["--engine", engine.address]
    label = ["--label", "batch=refused"]
    assert main(["invoke", "no-port-here", *at, *label, "--connect-timeout", "0.3"]) == 2
    assert "INVALID_ARGUMENT: target: 'no-port-here' is not 'host:port'" in _err(capsys)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"blob": "x" * (4 * 1024 * 1024)}))
    assert main(["invoke", slow_job_target, *at, *label, "--data", f"@{big}"]) == 1
    assert "RESOURCE_EXHAUSTED: payload: " in _err(capsys)
    assert main(["invoke", slow_job_target, *at, "--label", "Bad Key=x"]) == 2
    assert "INVALID_ARGUMENT: labels['Bad Key']" in _err(capsys)
    assert main(["tasks", "list", *at, *label, "-o", "json"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["invoke", "127.0.0.1:9", "--detach"], "--detach needs a running engine"),
        (["invoke", "127.0.0.1:9", "--engine", "127.0.0.1:9", "--store", "x"], "--store is"),
        (["tasks", "list", "--engine", "127.0.0.1:9", "--store", "x"], "not both"),
        (["tasks", "list", "--engine-ca", "ca.pem"], "--engine-ca needs --engine"),
        (["tasks", "list", "--engine", "10.1.2.3:50050"], "without TLS"),
        (
            ["tasks", "list", "--engine", "127.0.0.1:9", "--connect-timeout", "0.3"],
            "cannot reach an engine daemon at 127.0.0.1:9",
        ),
    ],
)
def test_engine_options_refused_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in _err(capsys)

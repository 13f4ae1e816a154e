"""`asyncplugin invoke` on a typed RPC: JSON --data is parsed into the plugin's own message type,
found through server reflection, and the typed result is printed as JSON."""

from __future__ import annotations

import json

import pytest

from asyncplugin.cli import main

METHOD = "/asyncplugin.examples.v1.TranscriberService/Transcribe"


def test_typed_rpc_payload_and_result_go_through_reflection(
    transcriber_target: str, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Transcript comes back decoded (wordCount), not as raw bytes."""
    code = main(
        ["invoke", transcriber_target, "--method", METHOD, "--store", f"{tmp_path}/t.db"]
        + ["--data", '{"audioUrl": "https://example.com/talk.wav"}', "--min-interval", "0.1"]
        + ["--initial-interval", "0.1"]
    )
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")][-1]
    result = json.loads(out)
    assert code == 0
    assert result["state"] == "SUCCEEDED"
    assert result["data"]["wordCount"] > 0
    assert result["data"]["text"]


def test_wrong_field_in_typed_data_is_a_one_line_error(
    transcriber_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A field the input message lacks is refused before any task is recorded."""
    code = main(["invoke", transcriber_target, "--method", METHOD, "--data", '{"audio": "x"}'])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "not a valid asyncplugin.examples.v1.TranscribeInput" in err
    assert "audio" in err

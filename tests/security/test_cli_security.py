"""The command line end to end: `serve` with TLS, mutual TLS and a token in a subprocess on
127.0.0.1:0, `invoke` with the matching options, and the refusals."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from asyncplugin.cli import build_parser, main
from asyncplugin.cli.common import connection
from asyncplugin.cli.payload_types import resolve
from asyncplugin.cli.server_options import security_options
from asyncplugin.plugin import PluginServer
from server.transcriber import Transcriber
from tests.security.conftest import Pki

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-token-4f1c9a7e2b"


@dataclass(frozen=True)
class Served:
    """A `serve` subprocess: its address, its stderr log, the files it was given."""

    target: str
    log: Path
    token_file: Path


@pytest.fixture(scope="module")
def served(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`asyncplugin serve server.echo:Echo` with TLS, a client CA and a token file."""
    folder = tmp_path_factory.mktemp("serve")
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    log = folder / "serve.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "asyncplugin.cli", "serve", "server.echo:Echo",
             "--host", "127.0.0.1", "--port", "0",
             "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
             "--tls-client-ca", str(pki.ca.cert), "--token-file", str(token_file)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        )  # fmt: skip
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        assert line.startswith("serving echo on 127.0.0.1:"), line
        yield Served(line.rsplit(" ", 1)[-1].strip(), log, token_file)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def _invoke(served: Served, pki: Pki, store: Path, *extra: str) -> list[str]:
    return [
        "invoke", served.target, "--data", '{"hi": 1}', "--store", str(store),
        "--tls-ca", str(pki.ca.cert), "--connect-timeout", "5", *extra,
    ]  # fmt: skip


def _client_cert(pki: Pki) -> list[str]:
    return ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]


def _result(out: str) -> dict[str, object]:
    line = [text for text in out.splitlines() if text.startswith("{")][-1]
    result: dict[str, object] = json.loads(line)
    return result


def test_invoke_over_mtls_with_a_token_file(
    served: Served, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """invoke with the CA, a client certificate and --token-file SUCCEEDS; the token is in
    neither the SQLite file, nor `tasks show`, nor the server's log."""
    store = tmp_path / "tasks.db"
    args = _invoke(served, pki, store, *_client_cert(pki), "--token-file", str(served.token_file))
    assert main(args) == 0
    result = _result(capsys.readouterr().out)
    assert result["state"] == "SUCCEEDED"
    assert main(["tasks", "show", str(result["task_id"]), "--store", str(store)]) == 0
    assert TOKEN not in capsys.readouterr().out
    for path in store.parent.glob("tasks.db*"):
        assert TOKEN.encode() not in path.read_bytes()
    log = served.log.read_text()
    assert "(TLS, client certificates required, bearer token)" in log
    assert TOKEN not in log


def test_invoke_takes_the_token_from_the_environment(
    served: Served,
    pki: Pki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """$ASYNCPLUGIN_TOKEN works in place of --token-file."""
    monkeypatch.setenv("ASYNCPLUGIN_TOKEN", TOKEN)
    assert main(_invoke(served, pki, tmp_path / "t.db", *_client_cert(pki))) == 0
    assert _result(capsys.readouterr().out)["state"] == "SUCCEEDED"


def test_invoke_with_a_wrong_token_fails_unauthenticated(
    served: Served,
    pki: Pki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wrong token: exit 1, the task FAILED with code UNAUTHENTICATED; the server logs the
    refusal without the token either side sent."""
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-cli-token\n")
    monkeypatch.delenv("ASYNCPLUGIN_TOKEN", raising=False)
    args = _invoke(served, pki, tmp_path / "t.db", *_client_cert(pki), "--token-file", str(wrong))
    assert main(args) == 1
    result = _result(capsys.readouterr().out)
    assert result["state"] == "FAILED"
    error = result["error"]
    assert isinstance(error, dict)
    assert error["code"] == "UNAUTHENTICATED"
    log = served.log.read_text()
    assert "refused a call" in log
    assert "not-the-cli-token" not in log
    assert TOKEN not in log


def test_invoke_without_a_client_certificate_cannot_connect(
    served: Served, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server requires a client certificate: without one the handshake fails and invoke
    says so in one line (exit 2)."""
    args = _invoke(served, pki, tmp_path / "t.db", "--token-file", str(served.token_file))
    args[args.index("--connect-timeout") + 1] = "1"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "TLS handshake failed" in err
    assert len(err.strip().splitlines()) == 1


def test_token_flag_is_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--token VALUE would show in `ps`: it is refused, pointing at --token-file."""
    code = main(["invoke", "127.0.0.1:1", "--token", "tok-on-argv", "--store", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--token-file" in err
    assert "tok-on-argv" not in err


def test_invoke_refuses_plaintext_to_a_remote_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without TLS options, a non-loopback target is refused before any connection."""
    code = main(["invoke", "192.0.2.10:50051", "--store", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 2
    assert "refusing to call 192.0.2.10:50051 without TLS" in err


def _serve_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", "server.echo:Echo", *extra])


def test_serve_reads_the_token_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """serve takes $ASYNCPLUGIN_TOKEN, or --token-file (several lines: rotation), warning when
    the file is readable by other users; the warning never shows a token."""
    monkeypatch.setenv("ASYNCPLUGIN_TOKEN", "env-token")
    assert security_options(_serve_args()).auth_tokens == ("env-token",)
    path = tmp_path / "tokens"
    path.write_text("old-token\nnew-token\n")
    path.chmod(0o644)
    options = security_options(_serve_args("--token-file", str(path)))
    assert options.auth_tokens == ("old-token", "new-token")
    err = capsys.readouterr().err
    assert "readable by other users" in err
    assert "old-token" not in err
    monkeypatch.delenv("ASYNCPLUGIN_TOKEN")
    assert security_options(_serve_args()).auth_tokens == ()


async def test_reflection_carries_the_token_on_plaintext_loopback(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """invoke resolves a typed method through reflection on a token-protected plaintext
    loopback server: the token rides on local credentials. Without it reflection is refused
    and only the generic types are known."""
    server = PluginServer(Transcriber(), host="127.0.0.1", port=0, auth_tokens=[token])
    await server.start()
    try:
        monkeypatch.setenv("ASYNCPLUGIN_TOKEN", token)
        link = connection(build_parser().parse_args(["invoke", server.address]))
        method = Transcriber.rpc_method
        types = await asyncio.to_thread(
            resolve, server.address, method, credentials=link.credentials()
        )
        assert types.input_type is not None
        assert types.input_type.DESCRIPTOR.full_name == "asyncplugin.examples.v1.TranscribeInput"
        anonymous = await asyncio.to_thread(resolve, server.address, method)
        assert anonymous.input_type is None
    finally:
        await server.stop(None)

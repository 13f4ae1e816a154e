"""`asyncplugin serve MODULE:CLASS`: loading, announcing the port, serving, clean exit."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from asyncplugin.cli import UsageError, main
from asyncplugin.cli.serve import load_plugin
from asyncplugin.examples.v1 import transcriber_pb2_grpc
from asyncplugin.examples.v1.transcriber_pb2 import TranscribeInput, TranscribeRequest
from asyncplugin.protocol import decode_payload, encode_payload
from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc, task_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def _serve_subprocess(
    target: str, *, name: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Runs `python -m asyncplugin.cli serve TARGET --port 0` from the repository root and
    yields the process and the address it printed; kills it if it is still alive at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asyncplugin.cli", "serve", target, "--port", "0",
        cwd=REPO_ROOT, env={**os.environ, "GRPC_VERBOSITY": "ERROR", **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        match = re.fullmatch(rf"serving {name} on (127\.0\.0\.1:\d+)\n", line)
        assert match, line
        yield process, match.group(1)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_subprocess_announces_port_serves_and_exits_on_signal(signum: int) -> None:
    """`python -m asyncplugin.cli serve server.echo:Echo --port 0` prints its address, answers,
    and exits 0 on SIGTERM or SIGINT."""
    async with _serve_subprocess("server.echo:Echo", name="echo") as (process, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = plugin_pb2_grpc.PluginServiceStub(channel)
            request = plugin_pb2.InvokeRequest(data=encode_payload({"hi": 1}))
            response = await stub.Invoke(request, timeout=10)
        assert decode_payload(response.data, dict) == {"echo": {"hi": 1}}
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0


async def test_serve_transcriber_answers_start_and_status_check() -> None:
    """The served transcriber answers new work RUNNING and a status check with the Transcript
    (a zero-length fake job, so nothing waits on the wall clock)."""
    target = "server.transcriber:Transcriber"
    env = {"ASYNCPLUGIN_FAKE_JOB_S": "0"}
    async with _serve_subprocess(target, name="transcriber", env=env) as (process, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = transcriber_pb2_grpc.TranscriberServiceStub(channel)
            audio = TranscribeInput(audio_url="https://example.com/a.wav")
            context = plugin_pb2.RequestContext(task_id="t-1", idempotency_key="k-1")
            first = await stub.Transcribe(
                TranscribeRequest(data=audio, context=context), timeout=10
            )
            assert first.status.state == task_pb2.TASK_STATE_RUNNING
            context.check_number = 1
            check = TranscribeRequest(
                data=audio, context=context, status=first.status, is_status_check=True
            )
            second = await stub.Transcribe(check, timeout=10)
        assert second.data.word_count > 0
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("server.echo", "expected MODULE:CLASS"),
        (":Echo", "expected MODULE:CLASS"),
        ("server.nowhere:Echo", "cannot import module 'server.nowhere'"),
        ("server.echo:Nope", "has no attribute 'Nope'"),
        ("server.echo:Payload", "not an AsyncPlugin"),
        ("server.transcriber:fake_transcribe", "not an AsyncPlugin"),
    ],
)
def test_bad_target_is_a_usage_error(target: str, message: str) -> None:
    """A bad MODULE:CLASS raises UsageError with a one-line message naming the problem."""
    with pytest.raises(UsageError, match=re.escape(message)) as caught:
        load_plugin(target)
    assert "\n" not in str(caught.value)


def test_target_loads_from_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MODULE is imported with the working directory on sys.path, like uvicorn."""
    (tmp_path / "cwd_plugin_probe.py").write_text(
        "from asyncplugin.plugin import AsyncPlugin\n"
        "class Probe(AsyncPlugin[dict, dict]):\n"
        "    def run(self, request):\n"
        "        return {}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_plugin_probe", raising=False)
    plugin = load_plugin("cwd_plugin_probe:Probe")
    assert type(plugin).__name__ == "Probe"
    assert plugin.name == "probe"
    sys.modules.pop("cwd_plugin_probe", None)


def test_bad_target_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The command prints one error line and exits 2 for a bad target, with no traceback."""
    assert main(["serve", "server.echo:Nope", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "has no attribute 'Nope'" in err


def test_taken_port_exits_1_naming_address(capsys: pytest.CaptureFixture[str]) -> None:
    """Serving on a port another socket listens on fails at once, naming host:port."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = main(["serve", "server.echo:Echo", "--port", str(port)])
    assert code == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err

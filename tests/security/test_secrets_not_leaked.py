"""Secrets never reach logs, reprs or the human-readable views of the task store."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from asyncplugin.cli import main
from asyncplugin.engine import (
    Engine,
    GrpcTransport,
    MemoryStore,
    SqliteStore,
    TaskOptions,
)
from asyncplugin.engine.credentials import BearerTokens, ChannelSecurity
from asyncplugin.protocol import TaskState
from tests.security.conftest import Pki, StartServer, tls_options


def _key_body(pem: bytes) -> str:
    """A distinctive line from inside a PEM key (what a leak would contain)."""
    return pem.decode().splitlines()[1]


async def test_logs_hold_no_token_or_key_material(
    pki: Pki,
    start_server: StartServer,
    token: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """An authenticated mTLS run and a refused one, logged at DEBUG everywhere: neither the
    token nor any private key appears in the log records or on stdout/stderr."""
    caplog.set_level(logging.DEBUG)
    server = await start_server(**tls_options(pki, mutual=True), auth_tokens=[token], debug=True)
    security = ChannelSecurity.from_files(
        ca_file=pki.ca.cert, client_cert=pki.client.cert, client_key=pki.client.key
    )
    wrong = "wrong-" + token
    for presented, expected in ((token, TaskState.SUCCEEDED), (wrong, TaskState.FAILED)):
        transport = GrpcTransport(
            security=security, metadata_provider=BearerTokens({server.address: presented})
        )
        async with Engine(store=MemoryStore(), transport=transport) as engine:
            record = await engine.invoke(server.address, payload={"x": 1}, timeout_s=20)
        await transport.close()
        assert record.state is expected
        logging.getLogger("test").debug("record %r transport %r", record, transport)
    assert "refused a call to /asyncplugin.v1.PluginService/Invoke: a wrong token" in caplog.text
    captured = capfd.readouterr()
    everything = caplog.text + captured.out + captured.err
    everything += "".join(repr(r.args) for r in caplog.records)
    for secret in (
        token,
        _key_body(pki.server.key_pem),
        _key_body(pki.client.key_pem),
    ):
        assert secret not in everything


async def test_tasks_show_redacts_tokens_and_metadata(
    tmp_path: Path, start_server: StartServer, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tasks show` of a task run with a bearer token and call metadata prints neither:
    metadata keys only, values redacted; the token is not even in the store."""
    store = tmp_path / "tasks.db"
    server = await start_server(auth_tokens=[token])
    transport = GrpcTransport(metadata_provider=BearerTokens({server.address: token}))
    options = TaskOptions(plugin_id="transcriber", metadata=(("x-api-key", "meta-secret-value"),))
    async with Engine(store=SqliteStore(store), transport=transport) as engine:
        record = await engine.invoke(server.address, options=options, timeout_s=20)
    await transport.close()
    assert record.state is TaskState.SUCCEEDED  # the token was sent and accepted
    show = ["tasks", "show", record.task_id, "--store", str(store)]
    assert await asyncio.to_thread(main, show) == 0
    assert await asyncio.to_thread(main, ["tasks", "list", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "meta-secret-value" not in out
    assert token not in out
    assert "x-api-key=<redacted>" in out
    assert _files_holding(tmp_path, token) == []  # never written (WAL and lock files included)


def _files_holding(folder: Path, secret: str) -> list[str]:
    return [path.name for path in folder.iterdir() if secret.encode() in path.read_bytes()]

"""Fixtures: example plugins served in their own processes, as a user would run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def served(plugin: str, **env: str) -> Iterator[str]:
    """`asyncplugin serve PLUGIN --port 0` in a subprocess; yields host:port, then SIGTERMs it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncplugin.cli", "serve", plugin, "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR", **env},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("serving "), line
    try:
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def slow_job_target() -> Iterator[str]:
    """The dict-payload SlowJob example; yields host:port."""
    with served("server.slow_job:SlowJob") as target:
        yield target


@pytest.fixture(scope="module")
def transcriber_target() -> Iterator[str]:
    """The typed Transcriber example with 0.3 s jobs; yields host:port."""
    with served("server.transcriber:Transcriber", ASYNCPLUGIN_FAKE_JOB_S="0.3") as target:
        yield target

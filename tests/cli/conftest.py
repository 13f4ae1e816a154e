"""Fixtures: an example plugin served in its own process, as a user would run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slow_job_target() -> Iterator[str]:
    """`asyncplugin serve server.slow_job:SlowJob --port 0` in a subprocess; yields host:port."""
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncplugin.cli",
            "serve",
            "server.slow_job:SlowJob",
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
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
def transcriber_target() -> Iterator[str]:
    """The typed Transcriber example served in a subprocess (1 s jobs); yields host:port."""
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR", "ASYNCPLUGIN_FAKE_JOB_S": "0.3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncplugin.cli", "serve", "server.transcriber:Transcriber"]
        + ["--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("serving "), line
    try:
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)

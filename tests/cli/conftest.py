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


CLI_ENV = {**os.environ, "GRPC_VERBOSITY": "ERROR", "PYTHONUNBUFFERED": "1"}
"""The environment of every command-line process the tests start (no inherited engine)."""
for _name in ("ASYNCPLUGIN_ENGINE", "ASYNCPLUGIN_STORE", "ASYNCPLUGIN_TOKEN"):
    CLI_ENV.pop(_name, None)

DAEMON_POLICY = ("--initial-interval", "0.2", "--min-interval", "0.1", "--max-interval", "0.5")


def cli(
    *argv: str, stdin: str | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs `asyncplugin ARGV...` as its own process, as a user would; returns it finished."""
    return subprocess.run(
        [sys.executable, "-m", "asyncplugin.cli", *argv],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        env=CLI_ENV,
        timeout=timeout_s,
        check=False,
    )


def cli_process(*argv: str) -> subprocess.Popen[str]:
    """Starts `asyncplugin ARGV...` in the background (stdin, stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "asyncplugin.cli", *argv],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLI_ENV,
    )


class Daemon:
    """`asyncplugin engine serve` in its own process, on 127.0.0.1."""

    def __init__(self, store: Path, log: Path, *, port: int = 0) -> None:
        self.store = store
        self.log = log
        self.port = port
        self.process: subprocess.Popen[str] | None = None
        self.address = ""

    def start(self) -> str:
        """Starts it; returns the address it announced on its first line."""
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "asyncplugin.cli", "engine", "serve"]
                + ["--store", str(self.store), "--port", str(self.port), *DAEMON_POLICY],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=CLI_ENV,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("engine serving on "), (line, self.log.read_text())
        self.address = line.split()[3]
        self.port = int(self.address.rsplit(":", 1)[1])
        return self.address

    def kill(self) -> None:
        """SIGKILL: no goodbye, no last write."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon on a fresh store (not started); stopped after the test."""
    running = Daemon(tmp_path / "tasks.sqlite3", tmp_path / "daemon.log")
    try:
        yield running
    finally:
        running.stop()

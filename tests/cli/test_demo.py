"""`make demo` (asyncplugin demo) runs the whole conversation and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_demo_runs_every_task_to_its_expected_end(tmp_path: Path) -> None:
    """The demo's six tasks end as expected (success, failure with envelope, cancel, hint)."""
    result = subprocess.run(
        [sys.executable, "-m", "asyncplugin.cli", "demo", "--store", str(tmp_path / "demo.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every task ended as expected" in result.stdout
    assert "REMOTE_JOB_FAILED" in result.stdout
    assert "CANCELLED" in result.stdout
    assert (tmp_path / "demo.db").exists()


def test_hint_names_the_cli_by_its_path_when_the_venv_is_not_active(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The demo's "inspect later" hint spells the command so it can be pasted: the venv's
    bin/asyncplugin, relative to the current directory, unless that venv is active."""
    from asyncplugin.cli.demo import cli_command

    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "asyncplugin").touch()
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    assert cli_command() == os.path.join("venv", "bin", "asyncplugin")
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "venv"))
    assert cli_command() == "asyncplugin"
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)
    monkeypatch.delenv("VIRTUAL_ENV")
    assert cli_command() == "asyncplugin"

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

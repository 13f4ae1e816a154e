"""Smoke test of the benchmark suite: `python -m bench --quick` runs and prints its table.

Run by `make bench-smoke`, which `make test` runs too (after installing the `bench` extra). It
runs the suite in a subprocess from the repository root, so `bench` is importable. A bare
`pytest bench/test_smoke.py` skips when the `bench` extra is missing; under make
(`ASYNCPLUGIN_REQUIRE_BENCH=1`) a missing extra fails instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository root
SECTIONS = ("1", "2", "3", "4", "5", "6", "7", "8")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_benchmark_prints_the_table() -> None:
    """`python -m bench --quick` exits 0 and prints the header and a row for every benchmark."""
    if os.environ.get("ASYNCPLUGIN_REQUIRE_BENCH") == "1":
        import google.api_core  # noqa: F401
        import uvloop  # noqa: F401
    else:
        pytest.importorskip("google.api_core")
        pytest.importorskip("uvloop")
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert "cores:" in out
    assert "grpcio:" in out
    assert "baseline (same run)" in out
    assert "targets met:" in out
    rows = [line for line in out.splitlines() if line[:1].isdigit() and "  " in line]
    assert {row.split()[0] for row in rows} >= set(SECTIONS), out
    # The detail tables of the peer and attribution sections follow the main table.
    assert "shared schedule" in out
    assert "own defaults" in out
    assert "under cProfile" in out

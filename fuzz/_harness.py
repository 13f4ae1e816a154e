"""Shared start-up of the atheris harnesses: import path, instrumentation, and the run.

Each harness is `python fuzz/fuzz_<name>.py [libFuzzer flags] [corpus dirs]`, run from the
repository root by `make fuzz` (see docs/reliability.md). An exception other than the ones the
decoding chain is allowed to raise is a crash: libFuzzer stops and writes the input to
`-artifact_prefix` (crash-<sha1>), which reproduces it when passed as the only argument.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: E402


def load(name: str) -> Callable[[bytes], object]:
    """Imports `tests.reliability.chain.<name>` with the asyncplugin code instrumented."""
    with atheris.instrument_imports(include=["asyncplugin", "tests"]):
        from tests.reliability import chain
    function: Callable[[bytes], object] = getattr(chain, name)
    return function


def run(target: Callable[[bytes], object]) -> None:
    """Fuzzes `target` with libFuzzer's command line (sys.argv)."""
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()

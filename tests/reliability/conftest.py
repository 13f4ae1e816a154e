"""Fixtures and markers of the reliability suite (fault injection, malicious plugins, fuzzing).

Tests marked `long` are the full-size runs (a longer chaos run, more hypothesis examples); they
are skipped unless RELIABILITY_LONG=1 (`make reliability-long`). Everything else is sized to run
in `make test`.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest

from tests.reliability.sizes import LONG


def pytest_configure(config: pytest.Config) -> None:
    """Registers the suite's marker (pyproject's --strict-markers needs it)."""
    config.addinivalue_line("markers", "long: full-size reliability runs (RELIABILITY_LONG=1)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips `long` tests unless RELIABILITY_LONG=1."""
    if LONG:
        return
    skip = pytest.mark.skip(reason="full-size run: set RELIABILITY_LONG=1 (make reliability-long)")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


# The engine tests' fixtures: a FakeClock, engines on it (seeded, fast policy), and in-process
# test plugin servers on 127.0.0.1:0.
from tests.engine.conftest import clock, make_engine, serve  # noqa: E402, F401

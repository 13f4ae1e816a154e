"""How big the reliability runs are: small for `make test`, full size with RELIABILITY_LONG=1."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("RELIABILITY_LONG") == "1"
"""True for `make reliability-long`: the full-size runs."""

TIMEOUT_S = 1800 if LONG else 60
"""The per-test timeout of the property tests (pytest-timeout), scaled with their size."""


def examples(quick: int, long: int) -> settings:
    """Hypothesis settings: `quick` examples, derandomized (same examples every run) in
    `make test`; `long` random examples with RELIABILITY_LONG=1."""
    return settings(
        max_examples=long if LONG else quick,
        deadline=None,
        derandomize=not LONG,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )

"""The polling and transport retry schedules are pure functions with exact, bounded results."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncplugin.engine import PollingPolicy, TransportRetryPolicy, next_interval, retry_delay
from asyncplugin.engine.policy import backoff_delay


def test_defaults_follow_the_documented_choice() -> None:
    """Defaults: 1 s x1.6 to 60 s, +-20%, 1 h deadline, 10 s per check; retry 0.5 s x2 to 30 s."""
    policy = PollingPolicy()
    assert (policy.initial_interval_s, policy.multiplier, policy.max_interval_s) == (1, 1.6, 60)
    assert (policy.jitter, policy.deadline_s, policy.check_timeout_s) == (0.2, 3600, 10)
    retry = TransportRetryPolicy()
    assert (retry.initial_backoff_s, retry.multiplier, retry.max_backoff_s) == (0.5, 2, 30)
    assert retry.max_retries == 8


def test_interval_without_jitter_is_the_formula() -> None:
    """With jitter 0 the interval is exactly initial * multiplier^(n-1), capped at max."""
    policy = PollingPolicy(initial_interval_s=1, multiplier=1.6, max_interval_s=5, jitter=0)
    rng = random.Random(0)
    got = [next_interval(n, policy, rng)[0] for n in range(1, 7)]
    assert got == pytest.approx([1, 1.6, 2.56, 4.096, 5, 5])


def test_reason_names_formula_jitter_and_result() -> None:
    """The reason string says how the interval was computed, e.g. "backoff 1*1.6^2=2.56s ..."."""
    policy = PollingPolicy(initial_interval_s=1, multiplier=1.6, jitter=0.2)
    interval, reason = next_interval(3, policy, random.Random(7))
    change = round((interval / 2.56 - 1) * 100)
    shown = f"{interval:.2f}".rstrip("0").rstrip(".")
    assert reason == f"backoff 1*1.6^2=2.56s jitter {change:+d}% -> {shown}s"


def test_reason_mentions_the_cap() -> None:
    """Past the cap the reason says the base was capped."""
    policy = PollingPolicy(initial_interval_s=1, multiplier=2, max_interval_s=20, jitter=0)
    interval, reason = next_interval(6, policy, random.Random(0))
    assert interval == 20
    assert reason == "backoff 1*2^5=32s capped at 20s jitter +0% -> 20s"


def test_seeded_rng_gives_the_same_sequence() -> None:
    """The same seed gives the same intervals: schedules are reproducible in tests."""
    policy = PollingPolicy()
    first = [next_interval(n, policy, random.Random(42))[0] for n in range(1, 10)]
    second = [next_interval(n, policy, random.Random(42))[0] for n in range(1, 10)]
    assert first == second


@pytest.mark.parametrize(
    ("hint_s", "expected", "reason"),
    [
        (30.0, 20.0, "plugin hint 30s clamped to max 20s"),
        (5.0, 5.0, "plugin hint 5s"),
        (0.0, 0.5, "plugin hint 0s clamped to min 0.5s"),
    ],
)
def test_hint_is_honoured_and_clamped(hint_s: float, expected: float, reason: str) -> None:
    """A plugin hint replaces the backoff, clamped to [min_interval_s, max_interval_s]."""
    policy = PollingPolicy(max_interval_s=20, min_interval_s=0.5)
    assert next_interval(1, policy, random.Random(0), hint_s) == (expected, reason)


def test_hint_draws_the_rng_like_backoff() -> None:
    """A hint consumes one draw too, so later jitter does not depend on whether hints came."""
    policy = PollingPolicy()
    with_hint, without = random.Random(3), random.Random(3)
    next_interval(1, policy, with_hint, 10.0)
    next_interval(1, policy, without)
    assert next_interval(2, policy, with_hint) == next_interval(2, policy, without)


def test_retry_delay_reason_counts_retries() -> None:
    """The transport retry reason says which retry of how many it is."""
    delay, reason = retry_delay(2, TransportRetryPolicy(jitter=0), random.Random(0))
    assert delay == 1.0
    assert reason == "transport retry 2/8: backoff 0.5*2^1=1s jitter +0% -> 1s"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_interval_s": 0.1, "min_interval_s": 0.5},
        {"initial_interval_s": 100, "max_interval_s": 60},
        {"multiplier": 0.9},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"max_checks": 0},
        {"deadline_s": 0},
        {"check_timeout_s": 0},
        {"min_interval_s": 0},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    """A policy that could poll at ~0 s, shrink, or never start is refused with the field named."""
    with pytest.raises(ValueError, match="PollingPolicy"):
        PollingPolicy(**kwargs)  # type: ignore[arg-type]


def test_attempt_zero_is_refused() -> None:
    """Attempts count from 1."""
    with pytest.raises(ValueError, match="attempt"):
        next_interval(0, PollingPolicy(), random.Random(0))


def test_policies_round_trip_through_dicts() -> None:
    """Policies are stored as JSON-ready dicts and read back equal."""
    policy = PollingPolicy(initial_interval_s=2, max_checks=None, deadline_s=None)
    assert PollingPolicy.from_dict(policy.to_dict()) == policy
    retry = TransportRetryPolicy(max_retries=0)
    assert TransportRetryPolicy.from_dict(retry.to_dict()) == retry


_policies = st.builds(
    lambda min_s, extra, span, mult, jitter: PollingPolicy(
        min_interval_s=min_s,
        initial_interval_s=min_s + extra,
        max_interval_s=min_s + extra + span,
        multiplier=mult,
        jitter=jitter,
    ),
    st.floats(0.01, 10),
    st.floats(0, 10),
    st.floats(0, 1000),
    st.floats(1, 5),
    st.floats(0, 0.99),
)


@given(_policies, st.integers(1, 200), st.integers(0, 2**32))
def test_intervals_stay_within_bounds(policy: PollingPolicy, attempt: int, seed: int) -> None:
    """Every interval lies in [min_interval_s, max_interval_s], whatever the jitter draws."""
    interval, _ = next_interval(attempt, policy, random.Random(seed))
    assert policy.min_interval_s <= interval <= policy.max_interval_s


@given(_policies, st.integers(1, 200))
def test_base_never_decreases(policy: PollingPolicy, attempt: int) -> None:
    """Before jitter the schedule is non-decreasing in the attempt number."""
    no_jitter = PollingPolicy.from_dict({**policy.to_dict(), "jitter": 0.0})
    rng = random.Random(0)
    assert (
        next_interval(attempt, no_jitter, rng)[0] <= next_interval(attempt + 1, no_jitter, rng)[0]
    )


@given(_policies, st.integers(1, 50), st.integers(0, 2**32))
def test_jitter_stays_within_its_fraction(policy: PollingPolicy, attempt: int, seed: int) -> None:
    """A jittered interval is within +-jitter of its base (or clipped to the bounds)."""
    base = min(
        policy.initial_interval_s * policy.multiplier ** (attempt - 1), policy.max_interval_s
    )
    interval, _ = next_interval(attempt, policy, random.Random(seed))
    low = max(policy.min_interval_s, base * (1 - policy.jitter))
    high = min(policy.max_interval_s, base * (1 + policy.jitter))
    assert low - 1e-9 <= interval <= high + 1e-9


@given(_policies, st.floats(0, 1e6), st.integers(1, 50))
def test_hint_is_always_clamped(policy: PollingPolicy, hint_s: float, attempt: int) -> None:
    """Whatever the plugin hints, the interval is within the policy's bounds."""
    interval, reason = next_interval(attempt, policy, random.Random(0), hint_s)
    assert policy.min_interval_s <= interval <= policy.max_interval_s
    assert reason.startswith("plugin hint")
    if policy.min_interval_s <= hint_s <= policy.max_interval_s:
        assert interval == hint_s


@given(st.integers(3, 10_000))
def test_huge_attempts_do_not_overflow(attempt: int) -> None:
    """Very late attempts stay at the cap instead of overflowing."""
    delay, _ = backoff_delay(
        attempt, initial_s=1, multiplier=10, min_s=0.5, max_s=60, jitter=0.2, rng=random.Random(0)
    )
    assert 48 - 1e-9 <= delay <= 60

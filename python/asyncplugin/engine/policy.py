"""Backoff as pure functions: the polling schedule and the transport retry schedule.

Two policies, kept apart on purpose (see docs/architecture.md, "Where time comes from"):

- `PollingPolicy`: how often a RUNNING task is checked, when the task gives up (`max_checks`,
  `deadline_s`) and how long one status-check RPC may take (`check_timeout_s`).
- `TransportRetryPolicy`: how one call that failed in transport (UNAVAILABLE, or its own
  timeout) is retried. Such retries never count as checks and never as plugin failures.

Both compute their delays with the same pure function of (attempt, policy, rng): no clock, no
sleeping, so a schedule is tested exactly with a seeded `random.Random`.

The shared formula, for attempt n = 1, 2, 3, ...:

    base(n)  = min(initial * multiplier ** (n - 1), max)
    lo, hi   = max(min, base(n) * (1 - jitter)), min(max, base(n) * (1 + jitter))
    delay(n) = lo + rng.random() * (hi - lo)

So `base` never decreases, every delay lies in [min, max], and jitter never pushes a delay towards
0 s (the floor `min` holds even at the first attempt). Jitter is drawn uniformly over the clipped
range rather than clamped afterwards, so tasks sitting at the cap do not pile up on exactly `max`.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "PollingPolicy",
    "TransportRetryPolicy",
    "backoff_delay",
    "next_interval",
    "retry_delay",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PollingPolicy:
    """When to send the next status check of a RUNNING task, and when to give up.

    The interval before status check n (n = 1 for the first check after the RUNNING answer) is
    `backoff_delay(n, ...)` (see the module docstring for the formula). When the plugin's last
    answer carried `Task.check_after`, that hint replaces the backoff for this one interval,
    clamped to [min_interval_s, max_interval_s] and not jittered (the plugin chose the time). No
    check is ever scheduled after the task's deadline: the last interval is cut short so the
    deadline itself fires, and the task then fails with code "DEADLINE_EXCEEDED".

    Defaults, and why (published practice):
      - gRPC connection backoff: 1 s x1.6 up to 120 s, +-20% jitter.
      - google-api-core polling (long-running operations): 1 s x1.5 up to 20 s, 900 s deadline.
      - Temporal activity retry: 1 s x2, capped at 100x the initial interval.
      We take gRPC's 1 s x1.6 with +-20% jitter: the first checks come quickly (1, 1.6, 2.6,
      4.1 s...) for jobs that finish in seconds, while the interval reaches its cap in about ten
      checks. The cap is 60 s, between api-core's 20 s (which polls a long job 180 times an hour)
      and gRPC's 120 s (too slow to notice a finished job for a human watching): about 70 checks
      for an hour-long job. The overall deadline is 1 h (api-core's 900 s is too short for the
      third-party jobs plugins wrap, such as transcriptions and renders; set `deadline_s` per
      task when you know better, or None for no deadline). The per-check RPC timeout is 10 s: a
      status check should be a cheap look-up, so a slow one is a transport problem, retried by
      `TransportRetryPolicy`. `max_checks` (500) is only a safety net for tasks without a
      deadline. `min_interval_s` (0.5 s) is the floor for jitter and for a plugin's hint, so a
      plugin cannot make the engine hammer it.

    Attributes:
        initial_interval_s: the backoff base before the first status check.
        multiplier: growth factor per check (>= 1).
        max_interval_s: the longest interval between two checks.
        min_interval_s: the shortest interval between two checks (jitter and hints included).
        jitter: the fraction (0 <= jitter < 1) by which an interval varies around its base.
        max_checks: the most status checks before the task fails "MAX_CHECKS_EXCEEDED";
            None for no limit.
        deadline_s: the time from submission after which the task fails "DEADLINE_EXCEEDED";
            None for no deadline.
        check_timeout_s: the timeout of each RPC (initiation, status check, cancel).
    """

    initial_interval_s: float = 1.0
    multiplier: float = 1.6
    max_interval_s: float = 60.0
    min_interval_s: float = 0.5
    jitter: float = 0.2
    max_checks: int | None = 500
    deadline_s: float | None = 3600.0
    check_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        _check_backoff(
            "PollingPolicy",
            initial_s=self.initial_interval_s,
            multiplier=self.multiplier,
            min_s=self.min_interval_s,
            max_s=self.max_interval_s,
            jitter=self.jitter,
            names=("initial_interval_s", "min_interval_s", "max_interval_s"),
        )
        if self.max_checks is not None and self.max_checks < 1:
            raise ValueError(
                f"PollingPolicy.max_checks must be >= 1 or None, got {self.max_checks}"
            )
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise ValueError(f"PollingPolicy.deadline_s must be > 0 or None, got {self.deadline_s}")
        if not self.check_timeout_s > 0:
            raise ValueError(
                f"PollingPolicy.check_timeout_s must be > 0, got {self.check_timeout_s}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The policy as a JSON-ready dict (stored with each task)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PollingPolicy:
        """Rebuilds a policy stored by `to_dict` (unknown keys are ignored)."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportRetryPolicy:
    """How one call that failed in transport is retried (its own schedule, apart from polling).

    Retried: UNAVAILABLE (the plugin is down, restarting, or unreachable) and DEADLINE_EXCEEDED
    of the call itself (it ran past `PollingPolicy.check_timeout_s`), per AIP-194; also a
    CANCELLED the engine did not ask for (a grpc server cancels calls that arrive just as it
    starts a graceful shutdown, so a plugin restart would otherwise fail tasks). Every other
    gRPC error fails the task at once. A retry keeps the call's check number, counts in
    `Task.retries` (reset when a call gets an answer), and is recorded in the check history with
    outcome TRANSPORT_RETRY. The delay before retry n is `backoff_delay(n, ...)`.

    Defaults: 0.5 s x2 up to 30 s, +-20%, at most 8 retries: about 2 minutes of outage
    (0.5+1+2+4+8+16+30+30 s) is ridden out, which covers a plugin restart or a rolling deploy;
    longer outages fail the task with code "UNAVAILABLE" rather than hide behind the polling
    schedule. The overall deadline still applies during retries.

    Attributes:
        initial_backoff_s: the delay before the first retry.
        multiplier: growth factor per retry (>= 1).
        max_backoff_s: the longest delay between two retries.
        min_backoff_s: the shortest delay (the jitter floor).
        jitter: the fraction (0 <= jitter < 1) by which a delay varies around its base.
        max_retries: the most retries of one call before the task fails.
    """

    initial_backoff_s: float = 0.5
    multiplier: float = 2.0
    max_backoff_s: float = 30.0
    min_backoff_s: float = 0.25
    jitter: float = 0.2
    max_retries: int = 8

    def __post_init__(self) -> None:
        _check_backoff(
            "TransportRetryPolicy",
            initial_s=self.initial_backoff_s,
            multiplier=self.multiplier,
            min_s=self.min_backoff_s,
            max_s=self.max_backoff_s,
            jitter=self.jitter,
            names=("initial_backoff_s", "min_backoff_s", "max_backoff_s"),
        )
        if self.max_retries < 0:
            raise ValueError(
                f"TransportRetryPolicy.max_retries must be >= 0, got {self.max_retries}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The policy as a JSON-ready dict (stored with each task)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransportRetryPolicy:
        """Rebuilds a policy stored by `to_dict` (unknown keys are ignored)."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _check_backoff(
    owner: str,
    *,
    initial_s: float,
    multiplier: float,
    min_s: float,
    max_s: float,
    jitter: float,
    names: tuple[str, str, str],
) -> None:
    initial_name, min_name, max_name = names
    if not min_s > 0:
        raise ValueError(f"{owner}.{min_name} must be > 0, got {min_s}")
    if not min_s <= initial_s <= max_s:
        raise ValueError(
            f"{owner} needs {min_name} <= {initial_name} <= {max_name}, "
            f"got {min_s} / {initial_s} / {max_s}"
        )
    if not multiplier >= 1:
        raise ValueError(f"{owner}.multiplier must be >= 1, got {multiplier}")
    if not 0 <= jitter < 1:
        raise ValueError(f"{owner}.jitter must be in [0, 1), got {jitter}")


def backoff_delay(
    attempt: int,
    *,
    initial_s: float,
    multiplier: float,
    min_s: float,
    max_s: float,
    jitter: float,
    rng: random.Random,
) -> tuple[float, str]:
    """The jittered delay before attempt `attempt` (>= 1), and a reason string saying why.

    Formula (see the module docstring): base = min(initial * multiplier ** (attempt - 1), max);
    the delay is drawn uniformly from [max(min, base * (1 - jitter)), min(max, base * (1 +
    jitter))]. Exactly one `rng.random()` is drawn, even when jitter is 0, so sequences stay
    aligned across policies.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    raw, formula = _base(initial_s, multiplier, attempt - 1, max_s)
    base = min(raw, max_s)
    low = max(min_s, base * (1 - jitter))
    high = min(max_s, base * (1 + jitter))
    delay = low + rng.random() * (high - low)
    change = (delay / base - 1) * 100 if base else 0.0
    return delay, f"backoff {formula} jitter {change:+.0f}% -> {_num(delay)}s"


@functools.lru_cache(maxsize=1024)
def _base(initial_s: float, multiplier: float, exponent: int, max_s: float) -> tuple[float, str]:
    """The un-jittered delay and the reason's formula ("1*1.6^2=2.56s capped at ..."): the
    same few values for every task of a policy, so computed once each, not on every check."""
    try:
        raw = float(initial_s) * float(multiplier) ** exponent
    except OverflowError:
        raw = math.inf
    formula = f"{_num(initial_s)}*{_num(multiplier)}^{exponent}={_num(raw)}s"
    if raw > max_s:
        formula += f" capped at {_num(max_s)}s"
    return raw, formula


def next_interval(
    attempt: int,
    policy: PollingPolicy,
    rng: random.Random,
    hint_s: float | None = None,
) -> tuple[float, str]:
    """The interval before status check `attempt` (1 = first check), and why it was chosen.

    Without a hint: `backoff_delay` over the policy's interval bounds, e.g.
    "backoff 1*1.6^2=2.56s jitter -7% -> 2.38s". With the plugin's `check_after` hint: the hint
    clamped to [min_interval_s, max_interval_s], e.g. "plugin hint 30s clamped to max 20s". The
    rng is drawn once either way, so a hint does not shift the jitter of later checks.
    """
    delay, reason = backoff_delay(
        attempt,
        initial_s=policy.initial_interval_s,
        multiplier=policy.multiplier,
        min_s=policy.min_interval_s,
        max_s=policy.max_interval_s,
        jitter=policy.jitter,
        rng=rng,
    )
    if hint_s is None:
        return delay, reason
    if hint_s > policy.max_interval_s:
        return policy.max_interval_s, (
            f"plugin hint {_num(hint_s)}s clamped to max {_num(policy.max_interval_s)}s"
        )
    if hint_s < policy.min_interval_s:
        return policy.min_interval_s, (
            f"plugin hint {_num(hint_s)}s clamped to min {_num(policy.min_interval_s)}s"
        )
    return hint_s, f"plugin hint {_num(hint_s)}s"


def retry_delay(retry: int, policy: TransportRetryPolicy, rng: random.Random) -> tuple[float, str]:
    """The delay before transport retry `retry` (1 = first retry), and why it was chosen."""
    delay, reason = backoff_delay(
        retry,
        initial_s=policy.initial_backoff_s,
        multiplier=policy.multiplier,
        min_s=policy.min_backoff_s,
        max_s=policy.max_backoff_s,
        jitter=policy.jitter,
        rng=rng,
    )
    return delay, f"transport retry {retry}/{policy.max_retries}: {reason}"


def _num(value: float) -> str:
    """A short human form of a number of seconds or a factor: 1, 1.6, 2.56, 2.38."""
    if value >= 1e6:
        return f"{value:.3g}"
    return f"{value:.2f}".rstrip("0").rstrip(".")

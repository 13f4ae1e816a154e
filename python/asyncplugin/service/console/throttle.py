"""Wrong console tokens throttled per client address: a moving window of failed logins.

A client address that sent `max_failures` wrong tokens within `window_s` is refused for the
rest of that window without its token being checked at all, so guessing runs at a few tokens a
minute per address. A right token clears the address's count. Memory is bounded: at most
`max_addresses` addresses are remembered; the one whose last failure is oldest goes first.

Written here rather than taken from a rate-limit library because it must run on the console's
injected clock (tests move time, they do not wait for it) and it is one small job.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["LoginThrottle"]


class LoginThrottle:
    """Counts failed logins per client address in a moving window.

    Args:
        max_failures: wrong tokens an address may send within `window_s`.
        window_s: the window's length, in seconds.
        max_addresses: addresses remembered at most (the stalest is forgotten first).
        now: the time source (monotonic seconds).
    """

    __slots__ = ("_failures", "_max_addresses", "_max_failures", "_now", "_window_s")

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        max_addresses: int = 10_000,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {max_failures}")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if max_addresses < 1:
            raise ValueError(f"max_addresses must be >= 1, got {max_addresses}")
        self._max_failures = max_failures
        self._window_s = window_s
        self._max_addresses = max_addresses
        self._now = now
        # address -> times of its failures in the window; dict order: least recent failure first
        self._failures: dict[str, deque[float]] = {}

    def __repr__(self) -> str:
        return (
            f"LoginThrottle(max_failures={self._max_failures}, window_s={self._window_s}, "
            f"addresses={len(self._failures)})"
        )

    def retry_after_s(self, address: str) -> float:
        """Seconds until `address` may try a token again; 0.0 when it may now."""
        times = self._failures.get(address)
        if times is None:
            return 0.0
        now = self._now()
        while times and times[0] <= now - self._window_s:
            times.popleft()
        if not times:
            del self._failures[address]
            return 0.0
        if len(times) < self._max_failures:
            return 0.0
        return times[0] + self._window_s - now

    def failed(self, address: str) -> None:
        """Records a wrong token from `address`."""
        times = self._failures.pop(address, None)
        if times is None:
            times = deque(maxlen=self._max_failures)
            while len(self._failures) >= self._max_addresses:
                del self._failures[next(iter(self._failures))]
        times.append(self._now())
        self._failures[address] = times  # to the end: the most recent failure

    def succeeded(self, address: str) -> None:
        """Forgets `address`'s failures (it sent a right token)."""
        self._failures.pop(address, None)

    @property
    def addresses(self) -> int:
        """Addresses with failures remembered now."""
        return len(self._failures)

"""Who may call a server: bearer tokens checked on every call (plugin servers and the engine
daemon alike; both sides take it from here, neither imports the other).

`BearerTokenInterceptor` is a grpc.aio server interceptor. A call passes only if it carries
exactly one `authorization: Bearer <token>` metadata entry whose token equals one of the
configured tokens (each compared with `hmac.compare_digest`, all of them every time, so the
time taken does not tell which one nearly matched). Any other call is answered UNAUTHENTICATED
before its request is even decoded. The gRPC health service is exempt, so load balancers and
orchestrators can probe a server without holding a secret; it tells only SERVING or not.
Server reflection is NOT exempt: a server's schema is shown only to callers holding a token.

Tokens never appear in logs, errors or reprs. A refused call is logged with its method and the
reason ("no authorization metadata", "a wrong token", ...), but not every one: a client retrying
with a wrong token, or a scan, would flood the log. `RefusalLog` writes the first refusal of
each minute in full and counts the others into one summary line when the minute is over.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import grpc
from grpc import aio

from .security import validate_token

__all__ = [
    "AUTH_EXEMPT_PREFIXES",
    "REFUSAL_LOG_INTERVAL_S",
    "BearerTokenInterceptor",
    "RefusalLog",
]

logger = logging.getLogger("asyncplugin.auth")

AUTH_EXEMPT_PREFIXES: Final = ("/grpc.health.v1.Health/",)
"""Methods callable without a token: the health service only."""

REFUSAL_LOG_INTERVAL_S: Final = 60.0
"""After a refused call is logged, others are only counted for this long (seconds)."""

_AUTHORIZATION: Final = "authorization"
_SCHEME: Final = "bearer"
_REJECTED: Final = "a valid bearer token is required (metadata 'authorization: Bearer <token>')"


Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]
]


class RefusalLog:
    """Logs refused calls without flooding the log.

    The first refusal is logged in full ("refused a call to METHOD: REASON"); the ones that
    follow within `interval_s` are only counted, and logged as one summary line ("refused N
    more calls in S s (REASON: n, ...)") when the interval is over: by a timer in the running
    event loop, at the next refusal after it, or by `flush` (the server calls it on stop). So a
    flood of refused calls costs at most two lines per interval.

    Args:
        interval_s: how long after a logged refusal others are only counted.
        clock: monotonic seconds; the default is `time.monotonic` (tests pass a fake).
        log: where the lines go.
    """

    def __init__(
        self,
        *,
        interval_s: float = REFUSAL_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger = logger,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._interval_s = interval_s
        self._clock = clock
        self._log = log
        self._since: float | None = None
        self._last = 0.0
        self._counts: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        """Refusals counted but not yet logged."""
        return sum(self._counts.values())

    def refused(self, method: str, reason: str) -> None:
        """Notes one refused call: logs it, or counts it if one was logged within the interval."""
        now = self._clock()
        if self._since is not None and now - self._since < self._interval_s:
            self._counts[reason] += 1
            self._last = now
            self._start_timer(self._since + self._interval_s - now)
            return
        self.flush()
        self._since = now
        self._log.info("refused a call to %s: %s", method, reason)

    def flush(self) -> None:
        """Logs the summary of the refusals counted since the last line, if there are any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._counts:
            return
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self._counts.items()))
        span_s = self._last - (self._since if self._since is not None else self._last)
        count = self.pending
        calls = "call" if count == 1 else "calls"
        self._log.info("refused %d more %s in %.0f s (%s)", count, calls, span_s, reasons)
        self._counts.clear()

    def _start_timer(self, delay_s: float) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next refusal or `flush` writes the summary
        self._timer = loop.call_later(max(delay_s, 0.0), self.flush)


class BearerTokenInterceptor(aio.ServerInterceptor):
    """Refuses every call (health excepted) that lacks one of the accepted bearer tokens.

    Args:
        tokens: the accepted tokens (at least one); several allow rotation.
        exempt_prefixes: method paths starting with one of these need no token.
        refusals: where refused calls are logged (default: a RefusalLog of its own).
    """

    def __init__(
        self,
        tokens: Iterable[str],
        *,
        exempt_prefixes: tuple[str, ...] = AUTH_EXEMPT_PREFIXES,
        refusals: RefusalLog | None = None,
    ) -> None:
        accepted = tuple(validate_token(token, source="auth token") for token in tokens)
        if not accepted:
            raise ValueError("BearerTokenInterceptor needs at least one token")
        self._tokens = tuple(token.encode("ascii") for token in accepted)
        self._exempt = exempt_prefixes
        self.refusals = refusals if refusals is not None else RefusalLog()

    def __repr__(self) -> str:
        return f"BearerTokenInterceptor(<{len(self._tokens)} token(s) redacted>)"

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Passes an authorized (or exempt) call on; answers any other UNAUTHENTICATED."""
        method = handler_call_details.method
        if method.startswith(self._exempt):
            return await continuation(handler_call_details)
        problem = self.check(handler_call_details.invocation_metadata)
        if problem is None:
            return await continuation(handler_call_details)
        self.refusals.refused(method, problem)
        handler = await continuation(handler_call_details)
        return _refusal(handler)

    def check(self, metadata: Any) -> str | None:
        """None if `metadata` carries an accepted token; else why not (never the token)."""
        values = [value for key, value in (metadata or ()) if str(key).lower() == _AUTHORIZATION]
        if not values:
            return "no authorization metadata"
        if len(values) > 1:
            return "more than one authorization entry"
        value = values[0]
        if isinstance(value, bytes):
            return "a binary authorization value"
        scheme, _, presented = str(value).strip().partition(" ")
        if scheme.lower() != _SCHEME or not presented.strip():
            return "the authorization scheme is not Bearer"
        try:
            candidate = presented.strip().encode("ascii")
        except UnicodeEncodeError:
            return "a wrong token"
        matched = False
        for token in self._tokens:  # compare with all: no early exit
            matched |= hmac.compare_digest(candidate, token)
        return None if matched else "a wrong token"


def _refusal(handler: grpc.RpcMethodHandler[Any, Any] | None) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same streaming kind that answers UNAUTHENTICATED without reading the
    request (no deserializer: an unauthenticated peer's bytes are never parsed)."""

    async def refuse(_request: object, context: aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REJECTED)

    request_streaming = handler is not None and handler.request_streaming
    response_streaming = handler is not None and handler.response_streaming
    if request_streaming and response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)

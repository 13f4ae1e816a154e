"""Who may call a plugin: bearer tokens checked on every call, and the plaintext-bind rule.

`BearerTokenInterceptor` is a grpc.aio server interceptor. A call passes only if it carries
exactly one `authorization: Bearer <token>` metadata entry whose token equals one of the
configured tokens (each compared with `hmac.compare_digest`, all of them every time, so the
time taken does not tell which one nearly matched). Any other call is answered UNAUTHENTICATED
before its request is even decoded. The gRPC health service is exempt, so load balancers and
orchestrators can probe a server without holding a secret; it tells only SERVING or not.
Server reflection is NOT exempt: a plugin's schema is shown only to callers holding a token.

Tokens never appear in logs, errors or reprs; a rejected call is logged with its method, its
peer and the reason ("no token", "wrong token", ...).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import grpc
from grpc import aio

from asyncplugin.protocol.security import validate_token

__all__ = [
    "AUTH_EXEMPT_PREFIXES",
    "BearerTokenInterceptor",
]

logger = logging.getLogger("asyncplugin.plugin.auth")

AUTH_EXEMPT_PREFIXES: Final = ("/grpc.health.v1.Health/",)
"""Methods callable without a token: the health service only."""

_AUTHORIZATION: Final = "authorization"
_SCHEME: Final = "bearer"
_REJECTED: Final = "a valid bearer token is required (metadata 'authorization: Bearer <token>')"


Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]
]


class BearerTokenInterceptor(aio.ServerInterceptor):
    """Refuses every call (health excepted) that lacks one of the accepted bearer tokens.

    Args:
        tokens: the accepted tokens (at least one); several allow rotation.
        exempt_prefixes: method paths starting with one of these need no token.
    """

    def __init__(
        self, tokens: Iterable[str], *, exempt_prefixes: tuple[str, ...] = AUTH_EXEMPT_PREFIXES
    ) -> None:
        accepted = tuple(validate_token(token, source="auth token") for token in tokens)
        if not accepted:
            raise ValueError("BearerTokenInterceptor needs at least one token")
        self._tokens = tuple(token.encode("ascii") for token in accepted)
        self._exempt = exempt_prefixes

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
        logger.info("refused a call to %s: %s", method, problem)
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

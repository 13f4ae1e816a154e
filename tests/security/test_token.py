"""Bearer tokens checked by the plugin server on every call (health excepted)."""

from __future__ import annotations

import hmac
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from asyncplugin.plugin.auth import BearerTokenInterceptor
from asyncplugin.protocol.security import is_loopback_host, read_token_file, validate_token
from tests.security.conftest import Pki, StartServer, bearer, call_echo, tls_options


async def test_right_token_passes(start_server: StartServer, token: str) -> None:
    """A call carrying `authorization: Bearer <token>` is answered."""
    server = await start_server(auth_tokens=[token])
    assert await call_echo(server.address, metadata=bearer(token)) is grpc.StatusCode.OK


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        (("authorization", "Bearer not-the-token"),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer"),),
        (("x-token", "irrelevant"),),
    ],
    ids=["missing", "wrong", "other-scheme", "empty", "other-key"],
)
async def test_wrong_or_missing_token_is_unauthenticated(
    start_server: StartServer, token: str, metadata: tuple[tuple[str, str], ...] | None
) -> None:
    """Without the right token the call is answered UNAUTHENTICATED."""
    server = await start_server(auth_tokens=[token])
    assert await call_echo(server.address, metadata=metadata) is grpc.StatusCode.UNAUTHENTICATED


async def test_two_authorization_entries_are_refused(start_server: StartServer, token: str) -> None:
    """A right token next to a wrong one is ambiguous and refused."""
    server = await start_server(auth_tokens=[token])
    metadata = (*bearer("wrong"), *bearer(token))
    assert await call_echo(server.address, metadata=metadata) is grpc.StatusCode.UNAUTHENTICATED


async def test_the_refusal_never_repeats_a_token(start_server: StartServer, token: str) -> None:
    """The UNAUTHENTICATED details name the required header, not the presented token."""
    server = await start_server(auth_tokens=[token])
    presented = "presented-" + token
    async with grpc.aio.insecure_channel(server.address) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/asyncplugin.v1.PluginService/Invoke"
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"", timeout=5, metadata=bearer(presented))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    details = caught.value.details() or ""
    assert "Bearer" in details
    assert token not in details
    assert presented not in details


async def test_several_tokens_allow_rotation(start_server: StartServer) -> None:
    """Every configured token is accepted, so clients can move from an old one to a new one."""
    server = await start_server(auth_tokens=["old-token", "new-token"])
    for accepted in ("old-token", "new-token"):
        assert await call_echo(server.address, metadata=bearer(accepted)) is grpc.StatusCode.OK
    assert (
        await call_echo(server.address, metadata=bearer("older-token"))
        is grpc.StatusCode.UNAUTHENTICATED
    )


async def test_token_and_mutual_tls_together(
    pki: Pki, start_server: StartServer, token: str
) -> None:
    """With mTLS and a token, a trusted client certificate alone is not enough."""
    server = await start_server(**tls_options(pki, mutual=True), auth_tokens=[token])
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem,
        private_key=pki.client.key_pem,
        certificate_chain=pki.client.cert_pem,
    )
    assert await call_echo(server.address, credentials) is grpc.StatusCode.UNAUTHENTICATED
    assert (
        await call_echo(server.address, credentials, metadata=bearer(token)) is grpc.StatusCode.OK
    )
    assert server.security == "TLS, client certificates required, bearer token"


async def test_health_needs_no_token_but_reflection_and_unknown_methods_do(
    start_server: StartServer, token: str
) -> None:
    """Health answers without a token (probes hold no secret); reflection reveals the schema
    only with a token; an unknown method is UNAUTHENTICATED, so methods cannot be enumerated."""
    server = await start_server(auth_tokens=[token])
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in reflect.ServerReflectionInfo(iter([request]), timeout=5):
                pass
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        answers = [
            reply
            async for reply in reflect.ServerReflectionInfo(
                iter([request]), timeout=5, metadata=bearer(token)
            )
        ]
        names = {s.name for s in answers[0].list_services_response.service}
        assert "asyncplugin.v1.PluginService" in names

        unknown: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/no.Such/Method"
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unknown(b"", timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_tokens_are_compared_with_compare_digest_against_every_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check uses hmac.compare_digest and compares with all tokens (no early exit)."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    interceptor = BearerTokenInterceptor(["first-token", "second-token", "third-token"])
    assert interceptor.check(bearer("first-token")) is None
    assert [b for _, b in seen] == [b"first-token", b"second-token", b"third-token"]
    assert interceptor.check(bearer("nope")) == "a wrong token"
    assert "token" not in repr(interceptor).replace("token(s)", "")
    assert "first" not in repr(interceptor)


@pytest.mark.parametrize("bad", ["", "has space", "tab\there", "nul\x00", "é-accent"])
def test_tokens_must_travel_as_metadata(bad: str) -> None:
    """Empty tokens and ones with spaces, control or non-ASCII characters are refused, and the
    message does not repeat them."""
    with pytest.raises(ValueError, match="auth token") as caught:
        BearerTokenInterceptor([bad])
    if bad:
        assert bad not in str(caught.value)
    assert validate_token("ok-Token_1.~+/=") == "ok-Token_1.~+/="


def test_read_token_file(tmp_path: Path) -> None:
    """One token per line; blank and # lines skipped; one token unless many=True."""
    path = tmp_path / "tokens"
    path.write_text("# rotation\nold-token\n\nnew-token\n")
    assert read_token_file(path, many=True) == ("old-token", "new-token")
    with pytest.raises(ValueError, match="exactly one token, found 2"):
        read_token_file(path)
    path.write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="holds no token"):
        read_token_file(path)
    with pytest.raises(ValueError, match="cannot read token file"):
        read_token_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("[::]", False),
        ("", False),
        ("10.0.0.5", False),
        ("plugin.example.com", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    """Only loopback addresses and "localhost" count as loopback; wildcards do not."""
    assert is_loopback_host(host) is loopback

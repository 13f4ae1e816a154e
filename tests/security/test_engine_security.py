"""The engine's client side: TLS, mutual TLS and bearer tokens per target, plaintext only to
loopback, and clear non-retried failures when credentials are wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncplugin.engine import (
    CheckOutcome,
    Engine,
    EngineCode,
    GrpcTransport,
    MemoryStore,
    TaskRecord,
)
from asyncplugin.engine.credentials import BearerTokens, ChannelSecurity
from asyncplugin.engine.transport import (
    SecurityConfig,
    TransportError,
    require_secure_target,
)
from asyncplugin.protocol import TaskState
from asyncplugin.protocol.security import is_loopback_target
from tests.security.conftest import Pki, StartServer, tls_options


def _client(pki: Pki, **changes: object) -> ChannelSecurity:
    return ChannelSecurity.from_files(
        ca_file=pki.ca.cert,
        client_cert=pki.client.cert,
        client_key=pki.client.key,
        **changes,  # type: ignore[arg-type]
    )


async def _run(
    target: str,
    *,
    security: SecurityConfig | None = None,
    tokens: BearerTokens | None = None,
    allow_insecure: bool = False,
) -> tuple[TaskRecord, list[CheckOutcome], list[str], GrpcTransport]:
    transport = GrpcTransport(
        security=security, metadata_provider=tokens, allow_insecure=allow_insecure
    )
    store = MemoryStore()
    try:
        async with Engine(store=store, transport=transport) as engine:
            record = await engine.invoke(target, payload={"hi": 1}, timeout_s=20)
            checks = await engine.checks(record.task_id)
    finally:
        await transport.close()
    return record, [c.outcome for c in checks], [c.grpc_code for c in checks], transport


async def test_engine_calls_over_mtls_with_a_token(
    pki: Pki, start_server: StartServer, token: str
) -> None:
    """TLS with the CA, a client certificate and the target's token: the task SUCCEEDS, and the
    token is not in the stored options."""
    server = await start_server(**tls_options(pki, mutual=True), auth_tokens=[token])
    record, outcomes, _, _ = await _run(
        server.address,
        security={server.address: _client(pki)},
        tokens=BearerTokens({server.address: token}),
    )
    assert record.state is TaskState.SUCCEEDED
    assert record.result_as(dict) == {"echo": {"hi": 1}}
    assert outcomes == [CheckOutcome.SUCCEEDED]
    assert token not in record.options.to_json()
    assert token not in repr(record)


@pytest.mark.parametrize("presented", ["wrong-token", None], ids=["wrong", "missing"])
async def test_wrong_token_fails_the_task_unauthenticated_without_retries(
    pki: Pki, start_server: StartServer, token: str, presented: str | None
) -> None:
    """A wrong or missing token fails the task at once with code UNAUTHENTICATED (one call,
    recorded as RPC_ERROR; never retried)."""
    server = await start_server(**tls_options(pki), auth_tokens=[token])
    tokens = BearerTokens({server.address: presented}) if presented else None
    record, outcomes, codes, _ = await _run(
        server.address, security=ChannelSecurity(root_certificates=pki.ca.cert_pem), tokens=tokens
    )
    assert record.state is TaskState.FAILED
    error = record.error_proto()
    assert error.code == EngineCode.UNAUTHENTICATED
    assert error.rpc_code == 16
    assert "token" in error.suggestion
    assert outcomes == [CheckOutcome.RPC_ERROR]
    assert codes == ["UNAUTHENTICATED"]


async def test_untrusted_server_certificate_fails_the_task_without_retries(
    pki: Pki, start_server: StartServer
) -> None:
    """A server whose certificate the engine's CA did not sign: TLS_HANDSHAKE_FAILED at once."""
    server = await start_server(**tls_options(pki))
    security = ChannelSecurity(root_certificates=pki.untrusted_ca.cert_pem)
    record, outcomes, _, _ = await _run(server.address, security=security)
    assert record.state is TaskState.FAILED
    assert record.error_code == EngineCode.TLS_HANDSHAKE_FAILED
    assert outcomes == [CheckOutcome.RPC_ERROR]


async def test_server_name_override(pki: Pki, start_server: StartServer) -> None:
    """server_name is what the certificate is checked against: "localhost" (in the SAN) passes,
    another name fails the handshake."""
    server = await start_server(**tls_options(pki))
    good = ChannelSecurity(root_certificates=pki.ca.cert_pem, server_name="localhost")
    record, _, _, _ = await _run(server.address, security=good)
    assert record.state is TaskState.SUCCEEDED
    bad = ChannelSecurity(root_certificates=pki.ca.cert_pem, server_name="other.example")
    record, _, _, _ = await _run(server.address, security=bad)
    assert record.error_code == EngineCode.TLS_HANDSHAKE_FAILED


async def test_one_security_for_every_target(pki: Pki, start_server: StartServer) -> None:
    """A single ChannelSecurity applies to every target."""
    server = await start_server(**tls_options(pki))
    security = ChannelSecurity(root_certificates=pki.ca.cert_pem)
    record, _, _, _ = await _run(server.address, security=security)
    assert record.state is TaskState.SUCCEEDED


async def test_plaintext_to_a_non_loopback_target_is_refused_before_connecting() -> None:
    """A plaintext call to 192.0.2.10 (TEST-NET) fails the task with INSECURE_TARGET; no
    channel is created, so nothing is sent."""
    target = "192.0.2.10:50051"
    record, outcomes, _, transport = await _run(target)
    assert record.state is TaskState.FAILED
    error = record.error_proto()
    assert error.code == EngineCode.INSECURE_TARGET
    assert target in error.message
    assert "allow_insecure" in error.suggestion
    assert outcomes == [CheckOutcome.RPC_ERROR]
    assert transport._channels == {}


def test_check_target_opens_no_connection(pki: Pki) -> None:
    """check_target refuses plaintext to a remote target, accepts it when allowed or when the
    target has TLS settings."""
    remote = "plugins.example.com:443"
    with pytest.raises(TransportError) as caught:
        GrpcTransport().check_target(remote)
    assert caught.value.error.code == EngineCode.INSECURE_TARGET
    assert caught.value.retryable is False
    GrpcTransport(allow_insecure=True).check_target(remote)
    security = ChannelSecurity(root_certificates=pki.ca.cert_pem)
    GrpcTransport(security={remote: security}).check_target(remote)
    GrpcTransport(security=lambda _t: security).check_target(remote)
    with pytest.raises(TransportError):
        GrpcTransport(security={"other:1": security}).check_target(remote)
    require_secure_target("127.0.0.1:1", secure=False, allow_insecure=False)


@pytest.mark.parametrize(
    ("target", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("::1", True),
        ("dns:///localhost:50051", True),
        ("ipv4:127.0.0.1:1,127.0.0.2:2", True),
        ("ipv4:127.0.0.1:1,10.0.0.1:2", False),
        ("unix:/tmp/plugin.sock", True),
        ("10.0.0.1:50051", False),
        ("0.0.0.0:50051", False),
        ("dns:///plugins.example.com:443", False),
        ("localhost.example.com:1", False),
        ("", False),
    ],
)
def test_is_loopback_target(target: str, loopback: bool) -> None:
    """Loopback addresses, "localhost" and Unix sockets are local; anything else is not."""
    assert is_loopback_target(target) is loopback


def test_channel_security_validation_and_repr(pki: Pki, tmp_path: Path) -> None:
    """A client certificate needs its key; an unreadable file is named; repr shows no PEM."""
    with pytest.raises(ValueError, match="both client_cert_chain and client_key"):
        ChannelSecurity(client_cert_chain=pki.client.cert_pem)
    with pytest.raises(ValueError, match="client key"):
        ChannelSecurity.from_files(client_cert=pki.client.cert, client_key=tmp_path / "none")
    security = _client(pki, server_name="localhost")
    assert security.mutual
    assert "PRIVATE KEY" not in repr(security)
    assert "CERTIFICATE" not in repr(security)
    assert security.describe() == "TLS (custom CA, mutual, server name localhost)"
    assert security.channel_options() == [("grpc.ssl_target_name_override", "localhost")]


def test_bearer_tokens_per_target_and_repr(token: str) -> None:
    """Each target gets its own token (or the default); repr never shows one."""
    tokens = BearerTokens({"a:1": token}, default="fallback-token")
    assert tokens("a:1") == (("authorization", f"Bearer {token}"),)
    assert tokens("b:2") == (("authorization", "Bearer fallback-token"),)
    assert BearerTokens({"a:1": token})("b:2") == ()
    assert token not in repr(tokens)
    assert "fallback-token" not in repr(tokens)
    with pytest.raises(ValueError, match="printable ASCII"):
        BearerTokens({"a:1": "has space"})


def test_transport_takes_credentials_or_security_not_both(pki: Pki) -> None:
    """Two ways to say TLS at once is a mistake."""
    security = ChannelSecurity(root_certificates=pki.ca.cert_pem)
    with pytest.raises(ValueError, match="not both"):
        GrpcTransport(credentials=lambda _t: None, security=security)

"""The plugin server's TLS and mutual TLS, against certificates made at test time."""

from __future__ import annotations

import grpc
import pytest

from asyncplugin.plugin import ServerSecurity
from tests.security.conftest import Pki, StartServer, call_echo, tls_options


async def test_tls_call_succeeds_with_the_right_ca(pki: Pki, start_server: StartServer) -> None:
    """A client trusting the CA that signed the server certificate gets an answer over TLS."""
    server = await start_server(**tls_options(pki))
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    assert await call_echo(server.address, credentials) is grpc.StatusCode.OK


async def test_tls_call_fails_with_a_wrong_ca(pki: Pki, start_server: StartServer) -> None:
    """A client trusting another CA refuses the server's certificate: no call goes through."""
    server = await start_server(**tls_options(pki))
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.untrusted_ca.cert_pem)
    assert await call_echo(server.address, credentials) is grpc.StatusCode.UNAVAILABLE


async def test_plaintext_client_cannot_call_a_tls_server(
    pki: Pki, start_server: StartServer
) -> None:
    """A TLS server does not answer plaintext calls."""
    server = await start_server(**tls_options(pki))
    assert await call_echo(server.address) is grpc.StatusCode.UNAVAILABLE


async def test_mtls_succeeds_with_a_ca_signed_client_cert(
    pki: Pki, start_server: StartServer
) -> None:
    """With a client CA configured, a client certificate signed by it is accepted."""
    server = await start_server(**tls_options(pki, mutual=True))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem,
        private_key=pki.client.key_pem,
        certificate_chain=pki.client.cert_pem,
    )
    assert await call_echo(server.address, credentials) is grpc.StatusCode.OK
    assert server.security == "TLS, client certificates required, no token"


async def test_mtls_refuses_a_client_without_a_certificate(
    pki: Pki, start_server: StartServer
) -> None:
    """A client that presents no certificate is refused during the handshake."""
    server = await start_server(**tls_options(pki, mutual=True))
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    assert await call_echo(server.address, credentials) is grpc.StatusCode.UNAVAILABLE


async def test_mtls_refuses_an_untrusted_client_certificate(
    pki: Pki, start_server: StartServer
) -> None:
    """A client certificate signed by another CA is refused during the handshake."""
    server = await start_server(**tls_options(pki, mutual=True))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem,
        private_key=pki.untrusted_client.key_pem,
        certificate_chain=pki.untrusted_client.cert_pem,
    )
    assert await call_echo(server.address, credentials) is grpc.StatusCode.UNAVAILABLE


def test_client_ca_needs_a_server_certificate(pki: Pki) -> None:
    """Mutual TLS without a server certificate is refused up front."""
    with pytest.raises(ValueError, match="client_ca needs cert_chain and private_key"):
        ServerSecurity.from_files(cert_file=None, key_file=None, client_ca_file=pki.ca.cert)

"""Fixtures for the security tests: throwaway certificates made at test time, tokens, servers.

Nothing secret is committed: every key and certificate is generated per session with the
`cryptography` package (P-256 keys, one-hour validity) into a temporary folder.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from asyncplugin.plugin import PluginServer, ServerSecurity
from asyncplugin.protocol import encode_payload
from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc
from server.echo import Echo

_VALIDITY = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Identity:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path

    @property
    def cert_pem(self) -> bytes:
        """The certificate, PEM."""
        return self.cert.read_bytes()

    @property
    def key_pem(self) -> bytes:
        """The private key, PEM."""
        return self.key.read_bytes()


@dataclass(frozen=True)
class Pki:
    """A trusted CA with a server and a client identity, and an untrusted CA with its own."""

    ca: Identity
    server: Identity
    client: Identity
    untrusted_ca: Identity
    untrusted_client: Identity
    untrusted_server: Identity


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Identity:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Identity(cert_path, key_path)


def _builder(subject: str, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _make_ca(
    folder: Path, stem: str
) -> tuple[Identity, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(stem, _name(stem), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _write(folder, stem, cert, key), cert, key


def _make_leaf(
    folder: Path,
    stem: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(stem, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _write(folder, stem, builder.sign(ca_key, hashes.SHA256()), key)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Throwaway certificates: server cert for 127.0.0.1/localhost (SAN), a client cert signed
    by the same CA, and a second CA (not trusted by anyone) with its own client and server."""
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = _make_ca(folder, "ca")
    other, other_cert, other_key = _make_ca(folder, "untrusted-ca")
    return Pki(
        ca=ca,
        server=_make_leaf(folder, "server", ca_cert, ca_key, server=True),
        client=_make_leaf(folder, "client", ca_cert, ca_key, server=False),
        untrusted_ca=other,
        untrusted_client=_make_leaf(
            folder, "untrusted-client", other_cert, other_key, server=False
        ),
        untrusted_server=_make_leaf(folder, "untrusted-server", other_cert, other_key, server=True),
    )


@pytest.fixture
def token() -> str:
    """A fresh random bearer token."""
    return "tok-" + secrets.token_urlsafe(24)


StartServer = Callable[..., Awaitable[PluginServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Starts the Echo plugin on 127.0.0.1:0 with the given PluginServer options; all are
    stopped at the end of the test."""
    started: list[PluginServer] = []

    async def start(**options: Any) -> PluginServer:
        server = PluginServer(Echo(), host="127.0.0.1", port=0, **options)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(None)


def tls_options(pki: Pki, *, mutual: bool = False) -> dict[str, Any]:
    """PluginServer keyword arguments serving the trusted server certificate (and requiring a
    client certificate from the trusted CA with `mutual`)."""
    security = ServerSecurity(
        cert_chain=pki.server.cert_pem,
        private_key=pki.server.key_pem,
        client_ca=pki.ca.cert_pem if mutual else None,
    )
    return {"security": security}


async def call_echo(
    address: str,
    credentials: grpc.ChannelCredentials | None = None,
    *,
    metadata: tuple[tuple[str, str], ...] | None = None,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.StatusCode:
    """Calls PluginService/Invoke once; returns OK or the error's status code (bounded: 5 s)."""
    channel = (
        grpc.aio.secure_channel(address, credentials, options=options)
        if credentials is not None
        else grpc.aio.insecure_channel(address, options=options)
    )
    try:
        stub = plugin_pb2_grpc.PluginServiceStub(channel)
        request = plugin_pb2.InvokeRequest(data=encode_payload({"hi": 1}))
        await stub.Invoke(request, timeout=5, metadata=metadata)
    except grpc.aio.AioRpcError as err:
        return err.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `token`."""
    return (("authorization", f"Bearer {token}"),)

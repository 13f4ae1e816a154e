"""ServerSecurity: the plugin server's TLS settings, read from files like ChannelSecurity's."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from asyncplugin import ServerSecurity
from asyncplugin.plugin import PluginServer
from asyncplugin.plugin.security import InsecureBindError, check_bind
from server.echo import Echo
from tests.security.conftest import Pki, StartServer, call_echo


def test_from_files_reads_the_pem_files(pki: Pki) -> None:
    """Certificate, key and client CA are read as bytes; mutual TLS follows the client CA."""
    security = ServerSecurity.from_files(
        cert_file=pki.server.cert, key_file=pki.server.key, client_ca_file=pki.ca.cert
    )
    assert security.cert_chain == pki.server.cert_pem
    assert security.private_key == pki.server.key_pem
    assert security.client_ca == pki.ca.cert_pem
    assert security.mutual
    assert security.describe() == "TLS, client certificates required"
    plain = ServerSecurity.from_files(cert_file=str(pki.server.cert), key_file=pki.server.key)
    assert not plain.mutual
    assert plain.describe() == "TLS"


def test_repr_never_shows_keys_or_certificates(pki: Pki) -> None:
    """A ServerSecurity can be logged: no PEM in its repr."""
    security = ServerSecurity.from_files(
        cert_file=pki.server.cert, key_file=pki.server.key, client_ca_file=pki.ca.cert
    )
    assert "PRIVATE KEY" not in repr(security)
    assert "CERTIFICATE" not in repr(security)


@pytest.mark.parametrize(
    ("cert", "key", "ca", "message"),
    [
        (True, False, False, "--tls-cert and --tls-key go together"),
        (False, True, False, "--tls-cert and --tls-key go together"),
        (False, False, True, "client_ca needs cert_chain and private_key"),
        (True, False, True, "--tls-cert and --tls-key go together"),
        (False, False, False, "--tls-cert and --tls-key go together"),
    ],
)
def test_a_missing_part_is_refused(pki: Pki, cert: bool, key: bool, ca: bool, message: str) -> None:
    """A certificate without its key, a key without its certificate, and a client CA without
    either are refused before anything is read."""
    with pytest.raises(ValueError, match=message):
        ServerSecurity.from_files(
            cert_file=pki.server.cert if cert else None,
            key_file=pki.server.key if key else None,
            client_ca_file=pki.ca.cert if ca else None,
        )


def test_an_empty_part_is_refused() -> None:
    """Empty PEM bytes are as good as none."""
    with pytest.raises(ValueError, match="both a certificate chain and its private key"):
        ServerSecurity(cert_chain=b"", private_key=b"key")


def test_an_unreadable_file_is_named(pki: Pki, tmp_path: Path) -> None:
    """The message names the file and what it was for, never its contents."""
    missing = tmp_path / "missing.key"
    with pytest.raises(ValueError, match=f"cannot read the private key {missing}"):
        ServerSecurity.from_files(cert_file=pki.server.cert, key_file=missing)


@pytest.mark.parametrize(
    ("host", "tls", "allow_insecure", "exposed"),
    [
        ("127.0.0.1", False, False, False),
        ("::1", False, False, False),
        ("0.0.0.0", True, False, False),
        ("0.0.0.0", False, True, True),
        ("10.1.2.3", False, True, True),
    ],
)
def test_check_bind_says_when_plaintext_leaves_the_machine(
    pki: Pki, host: str, tls: bool, allow_insecure: bool, exposed: bool
) -> None:
    """The plaintext-bind rule returns True exactly when an allowed plaintext server is exposed."""
    security = (
        ServerSecurity.from_files(cert_file=pki.server.cert, key_file=pki.server.key)
        if tls
        else None
    )
    assert check_bind(host, security=security, allow_insecure=allow_insecure) is exposed


def test_check_bind_refuses_plaintext_beyond_loopback() -> None:
    """Without TLS or allow_insecure a non-loopback host is refused, naming it."""
    refused = r"refusing to serve plaintext on '0\.0\.0\.0'"
    with pytest.raises(InsecureBindError, match=refused) as err:
        check_bind("0.0.0.0", security=None, allow_insecure=False)
    assert err.value.host == "0.0.0.0"
    with pytest.raises(InsecureBindError):
        PluginServer(Echo(), host="0.0.0.0", port=0)


async def test_a_server_with_server_security_speaks_tls(
    pki: Pki, start_server: StartServer
) -> None:
    """PluginServer(security=ServerSecurity.from_files(...)) answers a TLS client that trusts
    the CA, and says so in its security summary."""
    security = ServerSecurity.from_files(cert_file=pki.server.cert, key_file=pki.server.key)
    server = await start_server(security=security)
    assert server.security == "TLS, no token"
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    assert await call_echo(server.address, credentials) is grpc.StatusCode.OK

"""Plaintext only on loopback: a server without TLS refuses a non-loopback host unless told."""

from __future__ import annotations

import pytest

from asyncplugin.cli import main
from asyncplugin.plugin import BindError, PluginServer
from asyncplugin.plugin.security import InsecureBindError
from server.echo import Echo
from tests.security.conftest import Pki, tls_options


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "plugin.example.com"])
def test_plaintext_on_a_non_loopback_host_is_refused_before_binding(host: str) -> None:
    """The constructor refuses, naming the host, so nothing is ever bound."""
    with pytest.raises(InsecureBindError, match=f"refusing to serve plaintext on '{host}'"):
        PluginServer(Echo(), host=host, port=0)


def test_insecure_bind_error_is_a_bind_error() -> None:
    """Callers already handling BindError handle the refusal too."""
    assert issubclass(InsecureBindError, BindError)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_plaintext_on_loopback_is_allowed(host: str) -> None:
    """Loopback hosts need no TLS."""
    assert PluginServer(Echo(), host=host, port=0).security == "plaintext, no token"


def test_non_loopback_host_with_tls_or_explicit_insecure_is_allowed(pki: Pki) -> None:
    """TLS, or allow_insecure=True, lifts the refusal (constructed only: nothing is bound), and
    the server then serves on that host with exactly the protection asked for."""
    tls = PluginServer(Echo(), host="0.0.0.0", port=0, **tls_options(pki))
    assert (tls.address, tls.security) == ("0.0.0.0:0", "TLS, no token")
    mutual = PluginServer(Echo(), host="0.0.0.0", port=0, **tls_options(pki, mutual=True))
    assert mutual.security == "TLS, client certificates required, no token"
    insecure = PluginServer(Echo(), host="0.0.0.0", port=0, allow_insecure=True)
    assert (insecure.address, insecure.security) == ("0.0.0.0:0", "plaintext, no token")


def test_serve_cli_refuses_plaintext_on_0_0_0_0(capsys: pytest.CaptureFixture[str]) -> None:
    """`asyncplugin serve --host 0.0.0.0` without TLS exits 2 with one line naming the host,
    before the plugin is loaded or anything is bound."""
    code = main(["serve", "server.echo:Echo", "--host", "0.0.0.0", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "refusing to serve plaintext on '0.0.0.0'" in err
    assert "--insecure" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_cli_client_ca_needs_a_certificate(
    pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tls-client-ca without --tls-cert/--tls-key is a usage error."""
    code = main(["serve", "server.echo:Echo", "--tls-client-ca", str(pki.ca.cert)])
    assert code == 2
    assert "--tls-client-ca (mutual TLS) needs --tls-cert" in capsys.readouterr().err

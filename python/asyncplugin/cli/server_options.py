"""Options shared by the two servers, `asyncplugin serve` and `asyncplugin engine serve`.

Both take the same security options (TLS, mutual TLS, bearer tokens from a file or
$ASYNCPLUGIN_TOKEN, the loopback rule for plaintext) and the same observability options
(`--metrics-port/--metrics-host`, `--otlp-endpoint`, `--log-format`), read by the same code
here, so the two commands cannot drift apart.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncplugin.observability.otlp import otlp_tracer_provider
from asyncplugin.protocol.security import TOKEN_ENV, env_token, read_token_file
from asyncplugin.protocol.server_security import InsecureBindError, ServerSecurity, check_bind

from .errors import UsageError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "SecurityOptions",
    "add_observability_arguments",
    "add_security_arguments",
    "check_observability_arguments",
    "metrics_registry",
    "security_options",
    "tracer_provider",
]


def add_security_arguments(parser: argparse.ArgumentParser, *, title: str = "security") -> None:
    """--tls-cert, --tls-key, --tls-client-ca, --token-file and --insecure (read them with
    `security_options`)."""
    group = parser.add_argument_group(title)
    group.add_argument("--tls-cert", type=Path, metavar="FILE", help="PEM certificate chain")
    group.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key")
    group.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="FILE",
        help="PEM CA: require client certificates signed by it (mutual TLS)",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"require a bearer token on every call: one token per line (several allow "
        f"rotation); default ${TOKEN_ENV} if set",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        help="allow serving without TLS on a non-loopback --host",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityOptions:
    """A server's security arguments, from the command line (files already read)."""

    security: ServerSecurity | None
    auth_tokens: tuple[str, ...] = field(repr=False)
    allow_insecure: bool


def security_options(args: argparse.Namespace, *, command: str = "serve") -> SecurityOptions:
    """The server's security settings from the command line (files read here), checked by the
    servers' own rules before anything is loaded or bound.

    Args:
        args: the parsed options of `add_security_arguments` and `--host`.
        command: the subcommand, for warnings ("serve", "engine serve").

    Raises:
        UsageError: options that do not go together, an unreadable file, a bad token, or
            plaintext on a non-loopback --host without --insecure.
    """
    try:
        security = (
            ServerSecurity.from_files(
                cert_file=args.tls_cert, key_file=args.tls_key, client_ca_file=args.tls_client_ca
            )
            if any(path is not None for path in (args.tls_cert, args.tls_key, args.tls_client_ca))
            else None
        )
        exposed = check_bind(args.host, security=security, allow_insecure=args.insecure)
        tokens = _tokens(args.token_file, command)
    except (ValueError, InsecureBindError) as err:
        raise UsageError(str(err)) from err
    if exposed:
        print(
            f"asyncplugin {command}: warning: serving plaintext on {args.host} (--insecure): "
            "payloads and tokens cross the network unencrypted",
            file=sys.stderr,
        )
    return SecurityOptions(security=security, auth_tokens=tokens, allow_insecure=args.insecure)


def _tokens(token_file: Path | None, command: str) -> tuple[str, ...]:
    """Tokens from --token-file, else from $ASYNCPLUGIN_TOKEN, else none (ValueError if bad)."""
    if token_file is not None:
        _warn_if_shared(token_file, command)
        return read_token_file(token_file, many=True)
    token = env_token()
    return (token,) if token is not None else ()


def _warn_if_shared(path: Path, command: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # reading it reports the problem
    if mode & 0o077:
        print(
            f"asyncplugin {command}: warning: token file {path} is readable by other users "
            f"(mode {mode & 0o777:o}); chmod 600 it",
            file=sys.stderr,
        )


def add_observability_arguments(parser: argparse.ArgumentParser) -> None:
    """--metrics-port, --metrics-host, --otlp-endpoint and --log-format."""
    group = parser.add_argument_group("observability")
    group.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://METRICS_HOST:PORT/metrics (0: a free port)",
    )
    group.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the metrics endpoint listens on [%(default)s]",
    )
    group.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="send trace spans to this OpenTelemetry collector (OTLP/gRPC), e.g. "
        "http://127.0.0.1:4317",
    )
    group.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text, or one JSON object per line with task, trace and span ids "
        "[%(default)s]",
    )


def check_observability_arguments(args: argparse.Namespace) -> None:
    """Raises UsageError for observability options out of range."""
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port must be within 0..65535, got {args.metrics_port}")


def metrics_registry(args: argparse.Namespace) -> Any:
    """A fresh prometheus-client registry if --metrics-port was given, else None.

    Raises:
        UsageError: the `[metrics]` extra is not installed.
    """
    if args.metrics_port is None:
        return None
    try:
        from prometheus_client import CollectorRegistry
    except ImportError as err:
        raise UsageError(
            "--metrics-port needs prometheus-client and aiohttp: pip install 'asyncplugin[metrics]'"
        ) from err
    return CollectorRegistry()


def tracer_provider(args: argparse.Namespace, *, service_name: str) -> TracerProvider | None:
    """The OTLP tracer provider --otlp-endpoint asks for (None without it); call its
    `shutdown()` before exiting so the last spans are sent.

    Raises:
        TracingSetupError: the `[otel]` extra is missing, or the endpoint is not a URL.
    """
    if not args.otlp_endpoint:
        return None
    return otlp_tracer_provider(args.otlp_endpoint, service_name=service_name)

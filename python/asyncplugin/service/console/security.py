"""Who may use the console, and how: the bind rule, TLS, bearer-token login, sessions and CSRF.

The console takes the posture of the engine's gRPC API:
- without TLS it listens only on a loopback address (a non-loopback host is refused);
- with bearer tokens, every page asks for a login: the login form takes a token and, if it is
  one of the accepted tokens, sets a session cookie (HttpOnly, SameSite=Strict, Secure under
  TLS). The cookie never holds the token: it holds a random session id, an expiry and an HMAC
  made with a key that lives only in this process's memory, so a restart logs everyone out;
- logging out revokes the session on the server too: a copy of the cookie taken before the
  logout no longer opens a page (the revoked ids are kept until their cookies expire);
- wrong tokens are throttled per client address (`LoginThrottle`);
- every state-changing request (cancel, logout) is a POST carrying a CSRF token bound to the
  session (an HMAC of the session id), compared in constant time.

Tokens, keys and cookies never appear in a page, a log line or a repr.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from asyncplugin.protocol.security import is_loopback_target

__all__ = [
    "SESSION_COOKIE",
    "ConsoleConfigError",
    "ConsoleSecurity",
    "Session",
    "Sessions",
    "check_bind",
]

SESSION_COOKIE: Final = "asyncplugin_console"
"""The session cookie's name."""

_VERSION: Final = "v1"


class ConsoleConfigError(ValueError):
    """The console cannot start with these settings (the message is one line, for the CLI)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSecurity:
    """TLS and login settings for the console.

    Attributes:
        tls_cert_file: PEM certificate chain served over HTTPS (with `tls_key_file`).
        tls_key_file: its PEM private key.
        tokens: the accepted bearer tokens (several allow rotation); empty: no login.
        session_ttl_s: how long a login lasts.
    """

    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tokens: tuple[str, ...] = field(default=(), repr=False)
    session_ttl_s: float = 12 * 3600.0

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConsoleConfigError("the console's TLS needs both a certificate and a key file")
        for number, token in enumerate(self.tokens, start=1):
            if not token or not all("!" <= char <= "~" for char in token):
                raise ConsoleConfigError(
                    f"console token {number} must be non-empty printable ASCII without spaces"
                )
        if not self.session_ttl_s > 0:
            raise ConsoleConfigError(f"session_ttl_s must be > 0, got {self.session_ttl_s}")

    @classmethod
    def from_files(
        cls,
        *,
        tls_cert_file: str | Path | None = None,
        tls_key_file: str | Path | None = None,
        token_file: str | Path | None = None,
    ) -> ConsoleSecurity:
        """Settings from files (a token file holds one token per line, as the gRPC server's).

        Raises:
            ConsoleConfigError: a file cannot be read or holds no valid token (never the token).
        """
        tokens = _read_tokens(Path(token_file)) if token_file is not None else ()
        return cls(
            tls_cert_file=Path(tls_cert_file) if tls_cert_file is not None else None,
            tls_key_file=Path(tls_key_file) if tls_key_file is not None else None,
            tokens=tokens,
        )

    @property
    def tls(self) -> bool:
        """True when the console serves HTTPS."""
        return self.tls_cert_file is not None

    @property
    def login_required(self) -> bool:
        """True when pages ask for a bearer token first."""
        return bool(self.tokens)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (None without TLS).

        Raises:
            ConsoleConfigError: the certificate or key cannot be loaded (naming the files).
        """
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        except (OSError, ssl.SSLError) as err:
            reason = getattr(err, "strerror", None) or getattr(err, "reason", None) or "invalid"
            raise ConsoleConfigError(
                f"cannot load the console's TLS certificate {self.tls_cert_file} and key "
                f"{self.tls_key_file}: {reason}"
            ) from None
        return context

    def token_accepted(self, presented: str) -> bool:
        """True if `presented` is one of the tokens (compared with all, in constant time)."""
        try:
            candidate = presented.strip().encode("ascii")
        except UnicodeEncodeError:
            return False
        matched = False
        for token in self.tokens:  # no early exit: the time taken does not tell which matched
            matched |= hmac.compare_digest(candidate, token.encode("ascii"))
        return matched


def check_bind(host: str, security: ConsoleSecurity) -> None:
    """Refuses a non-loopback host without TLS, or without tokens (anyone could cancel).

    Raises:
        ConsoleConfigError: one line naming the host and what to add.
    """
    if host.strip() and is_loopback_target(host.strip()):
        return
    if not security.tls:
        raise ConsoleConfigError(
            f"refusing to serve the console on {host or 'every address'} without TLS: it is not "
            "a loopback address; give a TLS certificate and key, or use 127.0.0.1"
        )
    if not security.login_required:
        raise ConsoleConfigError(
            f"refusing to serve the console on {host or 'every address'} without bearer tokens: "
            "anyone reaching it could cancel tasks; give a token file, or use 127.0.0.1"
        )


def _read_tokens(path: Path) -> tuple[str, ...]:
    """Tokens from a file, one per line (blank lines and '#' comments skipped), as the gRPC
    servers read theirs; errors name the file, never a token."""
    try:
        text = path.read_text(encoding="ascii")
    except OSError as err:
        raise ConsoleConfigError(f"cannot read token file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConsoleConfigError(f"token file {path} must be ASCII text") from None
    tokens = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if not tokens:
        raise ConsoleConfigError(f"token file {path} holds no token")
    return tokens


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session: its id (random, never shown) and its CSRF token."""

    session_id: str = field(repr=False)
    csrf_token: str = field(repr=False)
    expires: float


class Sessions:
    """Signed, expiring session cookies, the CSRF tokens bound to them, and logouts.

    A logout revokes its session id until the cookie would have expired anyway. Should more than
    `max_revoked` revoked sessions be alive at once, the key is replaced instead: every cookie
    stops verifying (everyone logs in again), which bounds the memory a flood of logouts takes.

    Args:
        ttl_s: how long a session lasts.
        key: the HMAC key (default: 32 random bytes, so a restart ends every session).
        now: the time source (epoch seconds; wall time, not the engine's clock).
        max_revoked: revoked sessions kept before the key is replaced.
    """

    __slots__ = ("_key", "_max_revoked", "_now", "_revoked", "_ttl_s")

    def __init__(
        self,
        *,
        ttl_s: float,
        key: bytes | None = None,
        now: Callable[[], float] = time.time,
        max_revoked: int = 100_000,
    ) -> None:
        if max_revoked < 1:
            raise ValueError(f"max_revoked must be >= 1, got {max_revoked}")
        self._ttl_s = ttl_s
        self._key = key if key is not None else secrets.token_bytes(32)
        self._now = now
        self._max_revoked = max_revoked
        self._revoked: dict[str, float] = {}  # session id -> its cookie's expiry, oldest first

    def __repr__(self) -> str:
        return f"Sessions(ttl_s={self._ttl_s}, key=<redacted>)"

    def _mac(self, purpose: str, text: str) -> str:
        digest = hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def new(self) -> tuple[str, Session]:
        """A new session: (the cookie value, the session)."""
        session_id = secrets.token_urlsafe(24)
        expires = int(self._now() + self._ttl_s)
        body = f"{_VERSION}.{session_id}.{expires}"
        cookie = f"{body}.{self._mac('session', body)}"
        return cookie, Session(session_id, self._mac("csrf", session_id), float(expires))

    def verify(self, cookie: str | None) -> Session | None:
        """The session a cookie names, or None if it is missing, forged, malformed or expired."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            return None
        body = ".".join(parts[:3])
        if not hmac.compare_digest(parts[3], self._mac("session", body)):
            return None
        try:
            expires = float(int(parts[2]))
        except ValueError:
            return None
        if expires <= self._now() or parts[1] in self._revoked:
            return None
        return Session(parts[1], self._mac("csrf", parts[1]), expires)

    def revoke(self, session: Session) -> None:
        """Ends `session` now: its cookie no longer verifies, even if a copy of it was kept."""
        now = self._now()
        # Expiries grow with insertion order (one ttl), so the expired ones are at the front.
        for session_id, expires in list(self._revoked.items()):
            if expires > now:
                break
            del self._revoked[session_id]
        if session.expires <= now:
            return
        if len(self._revoked) >= self._max_revoked:
            self._key = secrets.token_bytes(32)  # every cookie dies: nothing left to remember
            self._revoked.clear()
            return
        self._revoked[session.session_id] = session.expires

    @property
    def revoked_count(self) -> int:
        """Revoked sessions remembered now (until their cookies would have expired)."""
        return len(self._revoked)

    @staticmethod
    def csrf_valid(session: Session | None, presented: str | None) -> bool:
        """True if `presented` is the session's CSRF token (constant-time comparison)."""
        if session is None or not presented:
            return False
        return hmac.compare_digest(
            session.csrf_token.encode(), presented.encode("utf-8", "replace")
        )

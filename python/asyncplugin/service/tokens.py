"""Completion tokens: signed, task-bound, expiring, and never stored.

A token authorizes CompleteTask and UpdateTask for one task and nothing else. It is
`ap1.<key id>.<task id>.<expiry>.<signature>`, the signature being HMAC-SHA256 (base64url) over
the version, key id, task id and expiry with the named key. Nothing about a token is written to
the task store: the daemon signs a fresh one for every call it sends (the task's id and the time
are all it needs) and checks a presented one against its keys, so a copy of the store gives no
way to complete tasks, and a token for one task cannot be turned into one for another.

Keys come from a key file: one `KEY_ID SECRET` per line (the secret is at least 32 random bytes,
base64), blank lines and `#` comments ignored. The FIRST key signs; every key listed verifies.
To rotate: put a new key first, keep the old one listed until tokens signed with it have expired
(`ttl_s` after the task's deadline), then remove it. `new_key_line()` makes a line
(`asyncplugin engine keygen`).

Tokens expire `ttl_s` after the task's deadline (or after issue, for a task without a deadline),
so a webhook may use the token of the task's first call until the task could no longer be
running anyway. A rejected token is logged with the reason and the task id it names, never
with the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import grpc

from asyncplugin.protocol import AsyncPluginError

__all__ = [
    "DEFAULT_TOKEN_TTL_S",
    "CompletionKey",
    "CompletionTokens",
    "TokenRejected",
    "new_key_line",
    "read_key_file",
]

_log = logging.getLogger(__name__)

DEFAULT_TOKEN_TTL_S: Final = 24 * 3600.0
"""How long a token stays valid after the task's deadline (or its issue, without a deadline)."""

_VERSION: Final = "ap1"
_KEY_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_TASK_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_MIN_SECRET_BYTES: Final = 32
_MAX_TOKEN_CHARS: Final = 512


class TokenRejected(AsyncPluginError):
    """A completion token is malformed, forged, expired, or signed with an unknown key."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED

    def __init__(self, reason: str, *, task_id: str = "") -> None:
        super().__init__(f"the completion token is not valid: {reason}")
        self.reason = reason
        self.task_id = task_id


@dataclass(frozen=True, slots=True)
class CompletionKey:
    """One signing key: its id (public, carried in tokens) and its secret (never shown)."""

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KEY_ID.match(self.key_id):
            raise ValueError(f"key id {self.key_id!r} must be 1-32 of A-Z a-z 0-9 _ -")
        if len(self.secret) < _MIN_SECRET_BYTES:
            raise ValueError(
                f"key {self.key_id}: the secret must be at least {_MIN_SECRET_BYTES} bytes"
            )


def new_key_line(key_id: str | None = None) -> str:
    """A new key file line, `KEY_ID SECRET`, with 32 random bytes and a dated id by default."""
    key = CompletionKey(key_id or f"k{secrets.token_hex(4)}", secrets.token_bytes(32))
    return f"{key.key_id} {base64.b64encode(key.secret).decode('ascii')}"


def read_key_file(path: Path) -> tuple[CompletionKey, ...]:
    """Reads a key file (see the module docstring); the first key is the signing key.

    Raises:
        ValueError: the file cannot be read, holds no key, a line is malformed, or a key id is
            repeated (the message names the file and line, never a secret).
    """
    try:
        text = path.read_text(encoding="ascii")
    except OSError as err:
        raise ValueError(f"cannot read key file {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"key file {path} must be ASCII text") from err
    keys: list[CompletionKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path} line {number}: expected 'KEY_ID SECRET'")
        key_id, encoded = parts
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{path} line {number}: the secret is not base64") from None
        try:
            keys.append(CompletionKey(key_id, secret))
        except ValueError as err:
            raise ValueError(f"{path} line {number}: {err}") from None
    if not keys:
        raise ValueError(f"key file {path} holds no key")
    ids = [key.key_id for key in keys]
    for key_id in ids:
        if ids.count(key_id) > 1:
            raise ValueError(f"key file {path}: key id {key_id!r} is listed twice")
    return tuple(keys)


class CompletionTokens:
    """Signs and checks completion tokens; the engine's `CompletionIssuer`.

    Args:
        keys: the keys; the first signs, all verify.
        address: where plugins reach the daemon ("host:port"); may be set after binding.
        ttl_s: how long a token stays valid after the task's deadline (or its issue).
    """

    def __init__(
        self,
        keys: tuple[CompletionKey, ...] | list[CompletionKey],
        *,
        address: str = "",
        ttl_s: float = DEFAULT_TOKEN_TTL_S,
    ) -> None:
        if not keys:
            raise ValueError("CompletionTokens needs at least one key")
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self._signing = keys[0]
        self._keys = {key.key_id: key for key in keys}
        self._ttl_s = ttl_s
        self.address = address

    def __repr__(self) -> str:
        return f"CompletionTokens(keys={list(self._keys)!r}, address={self.address!r})"

    def token_for(self, task_id: str, *, now: float, deadline: float | None) -> str:
        """A token for the task, valid until `ttl_s` after its deadline (or after `now`)."""
        if not _TASK_ID.match(task_id):
            raise ValueError(f"cannot issue a token for task id {task_id!r}")
        expiry = math.ceil((deadline if deadline is not None else now) + self._ttl_s)
        return self._sign(self._signing, task_id, expiry)

    def verify(self, token: str, *, now: float) -> str:
        """The task id a valid token is bound to.

        Raises:
            TokenRejected: malformed, unknown key, wrong signature (forged, or altered to name
                another task), or expired. Logged with the reason, never with the token.
        """
        try:
            return self._verify(token, now)
        except TokenRejected as rejected:
            _log.warning(
                "refused a completion token%s: %s",
                f" for task {rejected.task_id}" if rejected.task_id else "",
                rejected.reason,
            )
            raise

    def _verify(self, token: str, now: float) -> str:
        if not token:
            raise TokenRejected("no completion token was given")
        if len(token) > _MAX_TOKEN_CHARS:
            raise TokenRejected("the token is too long")
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != _VERSION:
            raise TokenRejected("malformed (not an asyncplugin completion token)")
        _, key_id, task_id, expiry_text, _signature = parts
        if not _TASK_ID.match(task_id) or not expiry_text.isdigit():
            raise TokenRejected("malformed (not an asyncplugin completion token)")
        key = self._keys.get(key_id)
        if key is None:
            raise TokenRejected(f"signed with an unknown key {key_id!r}", task_id=task_id)
        expected = self._sign(key, task_id, int(expiry_text))
        if not hmac.compare_digest(expected.encode("ascii"), token.encode("ascii", "replace")):
            raise TokenRejected("the signature does not match", task_id=task_id)
        if now >= int(expiry_text):
            raise TokenRejected("the token has expired", task_id=task_id)
        return task_id

    @staticmethod
    def _sign(key: CompletionKey, task_id: str, expiry: int) -> str:
        body = f"{_VERSION}.{key.key_id}.{task_id}.{expiry}"
        mac = hmac.new(key.secret, body.encode("ascii"), hashlib.sha256).digest()
        return f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"

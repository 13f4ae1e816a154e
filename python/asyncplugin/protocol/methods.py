"""gRPC method paths: the generic envelope method, and the one rule a method path must follow.

A plugin serves, and an engine calls, one unary method by its full path "/package.Service/Method"
(plugin.proto, "Typed RPCs"). Both sides check a path with `check_method`, so a path the engine
accepts is one the SDK can serve.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["GENERIC_METHOD", "check_method", "split_method"]

GENERIC_METHOD: Final = "/asyncplugin.v1.PluginService/Invoke"
"""The full path of the generic envelope method, `asyncplugin.v1.PluginService/Invoke`."""

_IDENTIFIER: Final = r"[A-Za-z_][A-Za-z0-9_]*"
# "/" + a service's full name (an optional dotted package, then the service) + "/" + a method.
_METHOD_PATH: Final = re.compile(rf"/({_IDENTIFIER}(?:\.{_IDENTIFIER})*)/({_IDENTIFIER})")


def split_method(path: str, *, what: str = "method") -> tuple[str, str]:
    """Splits "/package.Service/Method" into ("package.Service", "Method").

    Protobuf names are ASCII identifiers; the package is optional ("/Service/Method").

    Raises:
        ValueError: the path is not of that form (the message names `what` and, for a path
            given without its leading slash, the path meant).
    """
    match = _METHOD_PATH.fullmatch(path)
    if match is None:
        hint = ""
        if _METHOD_PATH.fullmatch(f"/{path}") is not None:
            hint = f" (a full path starts with '/': did you mean '/{path}'?)"
        raise ValueError(
            f"{what} must be a full method path like {GENERIC_METHOD!r}, got {path!r}{hint}"
        )
    return match.group(1), match.group(2)


def check_method(path: str, *, what: str = "method") -> str:
    """Returns `path` if it is a full method path "/package.Service/Method"; else ValueError."""
    split_method(path, what=what)
    return path

"""Cutting text to a byte limit: the one rule both sides use for every bounded string field.

The protocol bounds strings in UTF-8 bytes (`limits`), so a cut must count bytes, never split a
character, and show that something was cut.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ELLIPSIS", "truncate", "truncate_head"]

ELLIPSIS: Final = "…"
"""Marks where text was cut (3 UTF-8 bytes)."""

_ELLIPSIS_BYTES: Final = len(ELLIPSIS.encode("utf-8"))


def truncate(text: str, limit_bytes: int) -> str:
    """`text` cut to at most `limit_bytes` UTF-8 bytes, its end replaced by an ellipsis if cut."""
    raw = text.encode("utf-8")
    if len(raw) <= limit_bytes:
        return text
    return raw[: limit_bytes - _ELLIPSIS_BYTES].decode("utf-8", errors="ignore") + ELLIPSIS


def truncate_head(text: str, limit_bytes: int) -> str:
    """The last `limit_bytes` UTF-8 bytes of `text`, its start replaced by an ellipsis if cut
    (a traceback's end says the most)."""
    raw = text.encode("utf-8")
    if len(raw) <= limit_bytes:
        return text
    kept = raw[len(raw) - limit_bytes + _ELLIPSIS_BYTES :]
    return ELLIPSIS + kept.decode("utf-8", errors="ignore")

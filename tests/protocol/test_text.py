"""Cutting text to a byte limit: one rule for both sides."""

from __future__ import annotations

import pytest

from asyncplugin.protocol.text import ELLIPSIS, truncate, truncate_head


def test_text_within_the_limit_is_unchanged() -> None:
    """Nothing is cut (and no ellipsis added) when the text fits."""
    assert truncate("abc", 3) == "abc"
    assert truncate_head("abc", 3) == "abc"
    assert truncate("", 0) == ""


def test_truncate_keeps_the_start_and_marks_the_cut() -> None:
    """The start is kept, the end replaced by an ellipsis, within the limit."""
    assert truncate("abcdefghij", 8) == "abcde" + ELLIPSIS
    assert len(truncate("abcdefghij", 8).encode()) == 8


def test_truncate_head_keeps_the_end_and_marks_the_cut() -> None:
    """The end is kept (a traceback's last lines), the start replaced by an ellipsis."""
    assert truncate_head("abcdefghij", 8) == ELLIPSIS + "fghij"
    assert len(truncate_head("abcdefghij", 8).encode()) == 8


@pytest.mark.parametrize("limit", range(3, 40))
def test_a_cut_never_splits_a_character(limit: int) -> None:
    """Multi-byte characters are dropped whole: the result is valid UTF-8 within the limit."""
    text = "é€😀" * 10
    for cut in (truncate(text, limit), truncate_head(text, limit)):
        encoded = cut.encode("utf-8")
        assert len(encoded) <= limit
        assert ELLIPSIS in cut
        assert cut.replace(ELLIPSIS, "") in text
    assert text.startswith(truncate(text, limit)[: -len(ELLIPSIS)])
    assert text.endswith(truncate_head(text, limit)[len(ELLIPSIS) :])

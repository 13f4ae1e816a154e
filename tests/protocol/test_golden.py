"""Golden wire vectors: the checked-in bytes and JSON are what other languages test against."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format

from asyncplugin.protocol import ProtocolViolation, decode_response
from tests.golden_cases import (
    GOLDEN,
    GOLDEN_DIR,
    INVALID,
    INVALID_DIR,
    message_type,
    to_canonical_json,
)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_binary_vector_decodes_and_reencodes_byte_for_byte(name: str) -> None:
    """Decoding a checked-in .binpb and encoding it again gives the same bytes."""
    raw = (GOLDEN_DIR / f"{name}.binpb").read_bytes()
    message = message_type(name).FromString(raw)
    assert message.SerializeToString(deterministic=True) == raw


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_json_vector_matches_binary_vector(name: str) -> None:
    """The .json vector parses to the same message as the .binpb, and prints back identically."""
    kind = message_type(name)
    text = (GOLDEN_DIR / f"{name}.json").read_text()
    from_json = json_format.Parse(text, kind())
    from_binary = kind.FromString((GOLDEN_DIR / f"{name}.binpb").read_bytes())
    assert from_json == from_binary
    assert to_canonical_json(from_json) == text


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_vector_files_match_their_builders(name: str) -> None:
    """The files are what tests/golden_cases.py builds (regenerate them only on purpose)."""
    built = GOLDEN[name]()
    assert (GOLDEN_DIR / f"{name}.binpb").read_bytes() == built.SerializeToString(
        deterministic=True
    )


def test_every_golden_file_has_a_builder() -> None:
    """No orphan vector lies in testdata/golden without a builder that explains it."""
    on_disk = {path.stem for path in GOLDEN_DIR.glob("*.binpb")}
    assert on_disk == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_vector_breaks_its_named_rule(name: str) -> None:
    """Each invalid vector decodes to a violation of exactly the rule its manifest names."""
    manifest = json.loads((INVALID_DIR / "manifest.json").read_text())
    raw = (INVALID_DIR / f"{name}.binpb").read_bytes()
    with pytest.raises(ProtocolViolation) as caught:
        decode_response(raw)
    assert caught.value.rule == manifest[name]["rule"] == INVALID[name][1]


@pytest.mark.parametrize("name", [n for n in sorted(GOLDEN) if n.startswith("response_")])
def test_golden_responses_are_valid(name: str) -> None:
    """Every golden response is a valid answer (CANCELLED ones answer a cancel request)."""
    raw = (GOLDEN_DIR / f"{name}.binpb").read_bytes()
    decode_response(raw, cancel_requested="cancelled" in name)

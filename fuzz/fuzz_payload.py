"""Fuzzes a dict plugin's payload bytes: decode_payload(data, dict) and struct_to_dict
(tests/reliability/chain.py: consume_payload)."""

from __future__ import annotations

from _harness import load, run

if __name__ == "__main__":
    run(load("consume_payload"))

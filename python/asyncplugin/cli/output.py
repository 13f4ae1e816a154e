"""Machine-readable output (`-o json`): the service's messages in the protobuf JSON mapping.

Field names are the proto field names (`task_id`, `check_count`, `next_check_time`), so they are
stable and the same whether a task came from a daemon or a store file; enums are their names
(`TASK_STATE_RUNNING`), timestamps RFC 3339, bytes base64, int64 strings (the JSON mapping's
rules). A listing is one JSON object per line; anything else one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console

__all__ = ["add_output_option", "console", "message_dict", "print_json", "print_json_line"]

_PIPE_WIDTH = 160


def console() -> Console:
    """A rich Console for stdout: the terminal's width, or a wide line into a pipe or file
    (full task ids and messages are not squeezed to 80 columns)."""
    return Console() if sys.stdout.isatty() else Console(width=_PIPE_WIDTH)


def add_output_option(parser: argparse.ArgumentParser, *, raw: bool = False) -> None:
    """-o/--output table|json (and raw, where it makes sense)."""
    choices = ["table", "json", *(["raw"] if raw else [])]
    parser.add_argument(
        "-o",
        "--output",
        choices=choices,
        default="table",
        help="output format: table (for people), json (stable field names)"
        + (", raw (the result's bytes)" if raw else "")
        + " [%(default)s]",
    )


def message_dict(message: Message) -> dict[str, Any]:
    """A message in the protobuf JSON mapping, with proto field names."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_json(value: Any) -> None:
    """One JSON document (indented) on stdout."""
    if isinstance(value, Message):
        value = message_dict(value)
    print(json.dumps(value, indent=2, sort_keys=False), flush=True)


def print_json_line(value: Any) -> None:
    """One JSON object on one line of stdout (for listings and streams)."""
    if isinstance(value, Message):
        value = message_dict(value)
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
    sys.stdout.flush()

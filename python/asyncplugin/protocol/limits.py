"""Size and depth limits of the asyncplugin v1 protocol (documented in the .proto files)."""

from __future__ import annotations

from typing import Final

REMOTE_STATUS_MAX_BYTES: Final = 65_536
"""Largest serialized `remote_status_input` / `remote_status_output`, in bytes."""

STRUCT_MAX_DEPTH: Final = 32
"""Deepest nesting of Struct/ListValue inside `remote_status_input` / `remote_status_output`."""

ERROR_MAX_DEPTH: Final = 8
"""Deepest chain of wrapped Error envelopes, counting the outermost one."""

MESSAGE_MAX_BYTES: Final = 4 * 1024 * 1024
"""Default largest gRPC message accepted by engines and plugins, in bytes."""

TEXT_MAX_BYTES: Final = 4_096
"""Largest human-readable message or suggestion, in UTF-8 bytes."""

DETAIL_MAX_BYTES: Final = 16_384
"""Largest `internal_message` / `wrapped_message`, in UTF-8 bytes."""

CODE_MAX_BYTES: Final = 128
"""Largest machine-readable code or progress stage, in UTF-8 bytes."""

DOMAIN_MAX_BYTES: Final = 256
"""Largest error domain, in UTF-8 bytes."""

ERROR_METADATA_MAX_ENTRIES: Final = 64
"""Most entries in one Error's `metadata` map (a few machine-readable details, not a payload;
64 keep the map readable where it is printed, as `asyncplugin tasks show` does)."""

ERROR_METADATA_MAX_BYTES: Final = 16_384
"""Largest total of one Error's `metadata` keys and values, in UTF-8 bytes: the limit of
`internal_message`, the largest free text, so one Error stays within tens of KiB wherever it is
stored, logged or printed (a map had no bound but the 4 MiB message size)."""

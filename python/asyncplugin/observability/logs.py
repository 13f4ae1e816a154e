"""Log records as one JSON object per line, carrying the task id, trace id and span id.

`--log-format json` on the servers installs `JsonFormatter`. The task id comes from the
`TASK_ID` context variable, which the engine sets while it runs a task's step and the plugin
server sets while it answers a call; the trace and span ids come from the current OpenTelemetry
span (none when tracing is off). The project never logs a token or a key in the first place;
`redact` is a second line of defence over every message and traceback written as JSON.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Final, Literal

from opentelemetry import trace

__all__ = ["TASK_ID", "JsonFormatter", "LogFormat", "configure_logging", "redact"]

TASK_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "asyncplugin_task_id", default=None
)
"""The id of the task whose call is being made (engine) or answered (plugin), if any."""

LogFormat = Literal["text", "json"]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_BEARER: Final = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
_PRIVATE_KEY: Final = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL
)


def redact(text: str) -> str:
    """`text` with bearer credentials and PEM private keys replaced by `<redacted>`."""
    if "earer" not in text and "EARER" not in text and "PRIVATE KEY" not in text:
        return text  # the common case: nothing to look for
    text = _BEARER.sub(r"\1 <redacted>", text)
    return _PRIVATE_KEY.sub("<redacted private key>", text)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, message, and where known
    `task_id`, `trace_id` and `span_id` (W3C hex), and `exception` (the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        task_id = getattr(record, "task_id", None) or TASK_ID.get()
        if task_id:
            entry["task_id"] = str(task_id)
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = trace.format_trace_id(span_context.trace_id)
            entry["span_id"] = trace.format_span_id(span_context.span_id)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)


def configure_logging(*, level: int = logging.INFO, log_format: LogFormat = "text") -> None:
    """Sends log records to stderr as text lines or JSON objects (if logging is unconfigured).

    Raises:
        ValueError: `log_format` is neither "text" nor "json".
    """
    if log_format not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])

"""The named protocol rules of asyncplugin v1: the names every side reports violations by.

Each rule is stated in proto/asyncplugin/v1/plugin.proto ("Protocol rules"); `RULES` gives each a
one-line statement. A rule is a `Rule`, so a misspelt name is a type error, and `Rule(name)`
refuses a name that is not a rule with ValueError (a check that, unlike `assert`, also holds
under `python -O`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from . import limits

__all__ = ["RULES", "Rule"]


class Rule(enum.StrEnum):
    """A named protocol rule; its value is its name, as it travels in errors and reports."""

    MALFORMED_MESSAGE = "MALFORMED_MESSAGE"
    NO_DATA_OR_STATUS = "NO_DATA_OR_STATUS"
    STATE_UNSPECIFIED = "STATE_UNSPECIFIED"
    STATE_UNKNOWN = "STATE_UNKNOWN"
    STATE_NOT_ALLOWED_IN_ANSWER = "STATE_NOT_ALLOWED_IN_ANSWER"
    DATA_WITH_UNFINISHED_STATE = "DATA_WITH_UNFINISHED_STATE"
    RUNNING_WITHOUT_REMOTE_STATUS_INPUT = "RUNNING_WITHOUT_REMOTE_STATUS_INPUT"
    FAILED_WITHOUT_ERROR = "FAILED_WITHOUT_ERROR"
    ERROR_WITHOUT_FAILED = "ERROR_WITHOUT_FAILED"
    ERROR_WITHOUT_MESSAGE = "ERROR_WITHOUT_MESSAGE"
    ERROR_TOO_DEEP = "ERROR_TOO_DEEP"
    ERROR_METADATA_TOO_LARGE = "ERROR_METADATA_TOO_LARGE"
    CANCELLED_WITHOUT_REQUEST = "CANCELLED_WITHOUT_REQUEST"
    REMOTE_STATUS_INPUT_TOO_LARGE = "REMOTE_STATUS_INPUT_TOO_LARGE"
    REMOTE_STATUS_INPUT_TOO_DEEP = "REMOTE_STATUS_INPUT_TOO_DEEP"
    REMOTE_STATUS_OUTPUT_TOO_LARGE = "REMOTE_STATUS_OUTPUT_TOO_LARGE"
    REMOTE_STATUS_OUTPUT_TOO_DEEP = "REMOTE_STATUS_OUTPUT_TOO_DEEP"
    FIELD_TOO_LONG = "FIELD_TOO_LONG"
    NEGATIVE_CHECK_AFTER = "NEGATIVE_CHECK_AFTER"
    PROGRESS_FRACTION_OUT_OF_RANGE = "PROGRESS_FRACTION_OUT_OF_RANGE"
    PROGRESS_NEGATIVE = "PROGRESS_NEGATIVE"
    PROGRESS_DONE_EXCEEDS_TOTAL = "PROGRESS_DONE_EXCEEDS_TOTAL"
    STATUS_CHECK_WITHOUT_STATUS = "STATUS_CHECK_WITHOUT_STATUS"
    CHECK_NUMBER_MISMATCH = "CHECK_NUMBER_MISMATCH"

    @property
    def statement(self) -> str:
        """The rule in one line, e.g. "An answer must set data, status, or both."."""
        return RULES[self]


RULES: Final[Mapping[Rule, str]] = {
    Rule.MALFORMED_MESSAGE: "A message must decode as the envelope's protobuf type.",
    Rule.NO_DATA_OR_STATUS: "An answer must set data, status, or both.",
    Rule.STATE_UNSPECIFIED: "A Task's state must not be TASK_STATE_UNSPECIFIED.",
    Rule.STATE_UNKNOWN: "A Task's state must be a value defined in TaskState.",
    Rule.STATE_NOT_ALLOWED_IN_ANSWER: "An answer's state must be RUNNING, SUCCEEDED, FAILED or "
    "CANCELLED.",
    Rule.DATA_WITH_UNFINISHED_STATE: "An answer with data must not carry a non-SUCCEEDED status.",
    Rule.RUNNING_WITHOUT_REMOTE_STATUS_INPUT: "A RUNNING Task must carry remote_status_input "
    "({} is fine; absent is not).",
    Rule.FAILED_WITHOUT_ERROR: "A FAILED Task must carry the error envelope.",
    Rule.ERROR_WITHOUT_FAILED: "A Task that is not FAILED must not carry an error.",
    Rule.ERROR_WITHOUT_MESSAGE: "An Error's message must not be empty.",
    Rule.ERROR_TOO_DEEP: f"Errors nest at most {limits.ERROR_MAX_DEPTH} deep.",
    Rule.ERROR_METADATA_TOO_LARGE: f"An Error's metadata holds at most "
    f"{limits.ERROR_METADATA_MAX_ENTRIES} entries and {limits.ERROR_METADATA_MAX_BYTES} bytes of "
    "keys and values.",
    Rule.CANCELLED_WITHOUT_REQUEST: "A plugin answers CANCELLED only to cancel_requested = true.",
    Rule.REMOTE_STATUS_INPUT_TOO_LARGE: f"remote_status_input is at most "
    f"{limits.REMOTE_STATUS_MAX_BYTES} bytes serialized.",
    Rule.REMOTE_STATUS_INPUT_TOO_DEEP: f"remote_status_input nests at most "
    f"{limits.STRUCT_MAX_DEPTH} levels.",
    Rule.REMOTE_STATUS_OUTPUT_TOO_LARGE: f"remote_status_output is at most "
    f"{limits.REMOTE_STATUS_MAX_BYTES} bytes serialized.",
    Rule.REMOTE_STATUS_OUTPUT_TOO_DEEP: f"remote_status_output nests at most "
    f"{limits.STRUCT_MAX_DEPTH} levels.",
    Rule.FIELD_TOO_LONG: "A string field must not exceed its documented limit.",
    Rule.NEGATIVE_CHECK_AFTER: "Task.check_after must not be negative.",
    Rule.PROGRESS_FRACTION_OUT_OF_RANGE: "Progress.fraction is between 0.0 and 1.0.",
    Rule.PROGRESS_NEGATIVE: "Progress.done and Progress.total are not negative.",
    Rule.PROGRESS_DONE_EXCEEDS_TOTAL: "Progress.done does not exceed Progress.total.",
    Rule.STATUS_CHECK_WITHOUT_STATUS: "A status check carries status with remote_status_input.",
    Rule.CHECK_NUMBER_MISMATCH: "check_number is 0 on initiation and at least 1 on a status check.",
}
"""Every rule, with a one-line statement of it."""

"""The tasks page's query: filters (state, target, label, id prefix), page size and page token.

Parsing never raises: each malformed parameter becomes an error message keyed by the form field
it came from, so the page can show it next to that field. Paging is by cursor (the last row's
creation time and id), so tasks submitted while a user pages do not shift the next page.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from asyncplugin.engine import TaskRecord
from asyncplugin.protocol import TaskState

from .views import task_labels

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Page", "TaskQuery", "parse_query", "select"]

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 500

_TOKEN_PREFIX: Final = "c1."
_ID_PREFIX = re.compile(r"[0-9a-f]{1,32}")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}")
_FIELD_MAX_CHARS: Final = 256


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: after the task with this creation time and id (newest first)."""

    create_time: float
    task_id: str

    def token(self) -> str:
        """The opaque page token for this cursor."""
        raw = json.dumps([self.create_time, self.task_id], separators=(",", ":")).encode()
        return _TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """Reads a page token.

        Raises:
            ValueError: the token is not one this console issued.
        """
        problem = "is not a page token from this console (open the first page and use 'next')"
        if not token.startswith(_TOKEN_PREFIX) or len(token) > 200:
            raise ValueError(problem)
        body = token[len(_TOKEN_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            value = json.loads(raw)
        except (binascii.Error, ValueError):
            raise ValueError(problem) from None
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not isinstance(value[0], int | float)
            or isinstance(value[0], bool)
            or not math.isfinite(value[0])
            or not isinstance(value[1], str)
            or not _ID_PREFIX.fullmatch(value[1])
        ):
            raise ValueError(problem)
        return cls(float(value[0]), value[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskQuery:
    """What the tasks page shows.

    Attributes:
        states: only tasks in these states (all if empty).
        target: only tasks of this plugin target ("" for all).
        label: only tasks with this label: (key, value), or (key, None) for any value.
        id_prefix: only tasks whose id starts with this (lower-case hex).
        page_size: rows per page.
        cursor: where the page starts (None: the first page).
    """

    states: tuple[TaskState, ...] = ()
    target: str = ""
    label: tuple[str, str | None] | None = None
    id_prefix: str = ""
    page_size: int = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None

    def matches(self, record: TaskRecord) -> bool:
        """True if the task passes every filter (the cursor is not a filter)."""
        if self.states and record.state not in self.states:
            return False
        if self.target and record.target != self.target:
            return False
        if self.id_prefix and not record.task_id.startswith(self.id_prefix):
            return False
        if self.label is not None:
            key, value = self.label
            labels = task_labels(record)
            if key not in labels or (value is not None and labels[key] != value):
                return False
        return True

    def params(self, *, cursor: Cursor | None = None) -> list[tuple[str, str]]:
        """The query string parameters that ask for this query (at `cursor`)."""
        params = [("state", state.name) for state in self.states]
        if self.target:
            params.append(("target", self.target))
        if self.label is not None:
            key, value = self.label
            params.append(("label", key if value is None else f"{key}={value}"))
        if self.id_prefix:
            params.append(("q", self.id_prefix))
        if self.page_size != DEFAULT_PAGE_SIZE:
            params.append(("size", str(self.page_size)))
        if cursor is not None:
            params.append(("page", cursor.token()))
        return params

    def url(self, path: str, *, cursor: Cursor | None = None) -> str:
        """`path` with this query's parameters."""
        params = self.params(cursor=cursor)
        return f"{path}?{urlencode(params)}" if params else path


@dataclass(frozen=True, slots=True)
class Page:
    """One page of tasks, and the cursor of the next page (None on the last)."""

    records: list[TaskRecord]
    next_cursor: Cursor | None
    matched_before: int = 0


def parse_query(params: Mapping[str, Sequence[str]]) -> tuple[TaskQuery, dict[str, str]]:
    """Reads the tasks page's parameters; returns the query and errors by field name.

    A parameter with an error is left out of the query. Fields: state, target, label, q
    (id prefix), size, page.
    """
    errors: dict[str, str] = {}
    states: list[TaskState] = []
    for value in _values(params, "state"):
        try:
            states.append(TaskState[value.strip().upper()])
        except KeyError:
            names = ", ".join(state.name for state in TaskState)
            errors["state"] = f"unknown state {_shown(value)}: use one of {names}"
    target = _single(params, "target", errors)
    if target and (any(char.isspace() for char in target) or len(target) > _FIELD_MAX_CHARS):
        errors["target"] = f"target {_shown(target)} must be host:port without spaces"
        target = ""
    label: tuple[str, str | None] | None = None
    label_text = _single(params, "label", errors)
    if label_text:
        key, sep, value = label_text.partition("=")
        if not _LABEL_KEY.fullmatch(key) or len(value) > _FIELD_MAX_CHARS:
            errors["label"] = (
                f"label filter {_shown(label_text)} must be KEY or KEY=VALUE, the key made of "
                "letters, digits, '_', '.', '-', '/'"
            )
        else:
            label = (key, value if sep else None)
    id_prefix = _single(params, "q", errors).lower()
    if id_prefix and not _ID_PREFIX.fullmatch(id_prefix):
        errors["q"] = f"id prefix {_shown(id_prefix)} must be 1 to 32 hexadecimal digits"
        id_prefix = ""
    page_size = DEFAULT_PAGE_SIZE
    size_text = _single(params, "size", errors)
    if size_text:
        try:
            page_size = int(size_text)
            if not 1 <= page_size <= MAX_PAGE_SIZE:
                raise ValueError
        except ValueError:
            errors["size"] = f"page size {_shown(size_text)} must be 1 to {MAX_PAGE_SIZE}"
            page_size = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None
    token = _single(params, "page", errors)
    if token:
        try:
            cursor = Cursor.parse(token)
        except ValueError as err:
            errors["page"] = f"page token {_shown(token)} {err}"
    query = TaskQuery(
        states=tuple(dict.fromkeys(states)),
        target=target,
        label=label,
        id_prefix=id_prefix,
        page_size=page_size,
        cursor=cursor,
    )
    return query, errors


def select(records: Iterable[TaskRecord], query: TaskQuery) -> Page:
    """The page of `records` that `query` asks for, newest first (ties by id)."""
    matching = sorted(
        (record for record in records if query.matches(record)),
        key=lambda record: (-record.create_time, record.task_id),
    )
    start = 0
    if query.cursor is not None:
        after = (-query.cursor.create_time, query.cursor.task_id)
        while (
            start < len(matching)
            and (
                -matching[start].create_time,
                matching[start].task_id,
            )
            <= after
        ):
            start += 1
    rows = matching[start : start + query.page_size]
    more = start + query.page_size < len(matching)
    last = rows[-1] if rows else None
    next_cursor = Cursor(last.create_time, last.task_id) if more and last is not None else None
    return Page(rows, next_cursor, matched_before=start)


def _values(params: Mapping[str, Sequence[str]], name: str) -> list[str]:
    return [value for value in params.get(name, ()) if value.strip()]


def _single(params: Mapping[str, Sequence[str]], name: str, errors: dict[str, str]) -> str:
    values = _values(params, name)
    if len(values) > 1:
        errors[name] = f"give {name} once, not {len(values)} times"
        return ""
    return values[0].strip() if values else ""


def _shown(value: str) -> str:
    """A user's input quoted for an error message, cut to a readable length."""
    text = value if len(value) <= 60 else value[:57] + "..."
    return json.dumps(text)

"""Where `asyncplugin tasks` reads tasks from: a running engine daemon, or (read-only) a store.

Both give the service's messages (`engine_pb2.Task`, `WatchTaskResponse`): the daemon sends
them, and a store's records are converted by the same functions the daemon uses
(`asyncplugin.service.convert`), so every command prints the same fields either way. Refusals
are the same too: an unknown id is NOT_FOUND and an ambiguous prefix INVALID_ARGUMENT naming the
candidates, raised as `EngineServiceError` by both.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from asyncplugin.engine import AmbiguousTaskId, SqliteStore, TaskNotFound, TaskStore
from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.protocol import TaskState
from asyncplugin.service import MAX_PAGE_SIZE, EngineClient, EngineServiceError
from asyncplugin.service.convert import check_to_proto, task_to_proto, timestamp
from asyncplugin.service.errors import BadRequest
from asyncplugin.service.requests import list_filter

from .common import open_store, store_name, store_option, store_spec
from .engine_link import EngineLink, engine_link, refuse_engine_options
from .errors import UsageError

__all__ = ["DaemonSource", "ListQuery", "StoreSource", "TaskSource", "open_source"]

_FULL = engine_pb2.TASK_VIEW_FULL
_BASIC = engine_pb2.TASK_VIEW_BASIC


@dataclass(frozen=True, slots=True, kw_only=True)
class ListQuery:
    """What `tasks list` asks for: filters (all must hold) and how many tasks."""

    states: Sequence[TaskState] = ()
    target: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    created_after: float | None = None
    created_before: float | None = None
    limit: int = 50

    def request(self, *, page_size: int, page_token: str = "") -> engine_pb2.ListTasksRequest:
        """The ListTasksRequest for one page."""
        request = engine_pb2.ListTasksRequest(
            states=[int(state) for state in self.states],  # type: ignore[misc]
            target=self.target,
            labels=dict(self.labels),
            page_size=page_size,
            page_token=page_token,
        )
        if self.created_after is not None:
            request.created_after.CopyFrom(timestamp(self.created_after))
        if self.created_before is not None:
            request.created_before.CopyFrom(timestamp(self.created_before))
        return request


class TaskSource(abc.ABC):
    """Tasks from one place; use as an async context manager."""

    where: str
    """How to name the place in messages ("the engine at HOST:PORT", "store FILE")."""

    polled: bool = True
    """False when no engine polls the tasks (a store nobody holds): unfinished tasks wait."""

    async def __aenter__(self) -> TaskSource:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connects or opens the store."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Releases the connection or the store."""

    @abc.abstractmethod
    async def get(self, task_id: str, *, full: bool = True) -> engine_pb2.Task:
        """One task by id or unique prefix (`full`: with payload, result, history)."""

    @abc.abstractmethod
    def list(self, query: ListQuery) -> AsyncIterator[engine_pb2.Task]:
        """Tasks passing the query's filters, newest first, at most `query.limit`."""

    @abc.abstractmethod
    def watch(
        self, task_id: str, *, after_revision: int = 0
    ) -> AsyncIterator[engine_pb2.WatchTaskResponse]:
        """Each recorded change of the task until it ends (see EngineService.WatchTask)."""

    @abc.abstractmethod
    async def cancel(self, task_id: str) -> engine_pb2.Task:
        """Cancels the task; returns it after the cancellation."""

    def follow_hint(self, task_id: str) -> str:
        """The options that point another command at this source."""
        return ""

    @contextlib.contextmanager
    def naming(self) -> Iterator[None]:
        """Adds where the task was looked for to a NOT_FOUND refusal."""
        try:
            yield
        except EngineServiceError as err:
            if err.code is not grpc.StatusCode.NOT_FOUND:
                raise
            raise EngineServiceError(err.code, f"{err.detail} in {self.where}") from None


class DaemonSource(TaskSource):
    """A running engine daemon, through EngineClient."""

    def __init__(self, link: EngineLink, *, connect_timeout_s: float = 5.0) -> None:
        self.link = link
        self.where = f"the engine at {link.address}"
        self._connect_timeout_s = connect_timeout_s
        self._client: EngineClient | None = None

    @property
    def client(self) -> EngineClient:
        """The client (after `open`)."""
        if self._client is None:
            raise RuntimeError("the source is not open")
        return self._client

    async def open(self) -> None:
        """Checks that a daemon answers, then creates the client."""
        await asyncio.to_thread(self.link.probe, self._connect_timeout_s)
        self._client = self.link.client()

    async def close(self) -> None:
        """Closes the client."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def get(self, task_id: str, *, full: bool = True) -> engine_pb2.Task:
        """See TaskSource.get."""
        with self.naming():
            return await self.client.get(task_id, view=_FULL if full else _BASIC)

    async def list(self, query: ListQuery) -> AsyncIterator[engine_pb2.Task]:
        """See TaskSource.list (page after page until the limit)."""
        seen, token = 0, ""
        while seen < query.limit:
            request = query.request(
                page_size=min(query.limit - seen, MAX_PAGE_SIZE), page_token=token
            )
            response: engine_pb2.ListTasksResponse = await self.client.list(
                states=list(request.states),
                target=request.target,
                labels=dict(request.labels),
                created_after=query.created_after,
                created_before=query.created_before,
                page_size=request.page_size,
                page_token=token,
            )
            for task in response.tasks[: query.limit - seen]:
                seen += 1
                yield task
            token = response.next_page_token
            if not token:
                return

    async def watch(
        self, task_id: str, *, after_revision: int = 0
    ) -> AsyncIterator[engine_pb2.WatchTaskResponse]:
        """See TaskSource.watch; reconnects while the daemon restarts."""
        with self.naming():
            async for change in self.client.watch(
                task_id, after_revision=after_revision, reconnect_timeout_s=None
            ):
                yield change

    async def cancel(self, task_id: str) -> engine_pb2.Task:
        """See TaskSource.cancel."""
        with self.naming():
            return await self.client.cancel(task_id)

    def follow_hint(self, task_id: str) -> str:
        """--engine HOST:PORT."""
        return self.link.command()


class StoreSource(TaskSource):
    """A task store read without claiming it: whatever engine drives it keeps driving it.

    `watch` reads the store again every `poll_s` seconds; changes show as soon as the engine
    that drives the store records them.
    """

    def __init__(self, spec: str, *, poll_s: float = 0.25) -> None:
        self.spec = spec
        self.where = f"store {store_name(spec)}"
        self._poll_s = poll_s
        self.store: TaskStore = open_store(spec, must_exist=True)

    async def open(self) -> None:
        """Opens the store (never claims it) and notes whether an engine holds it."""
        await self.store.open()
        if isinstance(self.store, SqliteStore):
            self.polled = self.store.holder() is not None

    async def close(self) -> None:
        """Closes the store."""
        await self.store.close()

    async def _resolve(self, task_id: str) -> str:
        try:
            return await self.store.resolve(task_id)
        except TaskNotFound as err:
            raise EngineServiceError(grpc.StatusCode.NOT_FOUND, f"{err} in {self.where}") from None
        except AmbiguousTaskId as err:
            raise EngineServiceError(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None

    async def get(self, task_id: str, *, full: bool = True) -> engine_pb2.Task:
        """See TaskSource.get."""
        found = await self._resolve(task_id)
        record = await self.store.get(found)
        if record is None:
            raise EngineServiceError(grpc.StatusCode.NOT_FOUND, f"no task with id {task_id!r}")
        checks = await self.store.checks(found) if full else ()
        return task_to_proto(record, checks, view=_FULL if full else _BASIC)

    async def list(self, query: ListQuery) -> AsyncIterator[engine_pb2.Task]:
        """See TaskSource.list."""
        try:
            where = list_filter(query.request(page_size=0))
        except BadRequest as err:
            raise EngineServiceError(err.code, str(err)) from None
        for record in await self.store.query(where, limit=query.limit):
            yield task_to_proto(record, view=_BASIC)

    async def watch(
        self, task_id: str, *, after_revision: int = 0
    ) -> AsyncIterator[engine_pb2.WatchTaskResponse]:
        """See TaskSource.watch: the store is read again every `poll_s` seconds."""
        found = await self._resolve(task_id)
        revision, first = after_revision, True
        while True:
            record = await self.store.get(found)
            if record is None:
                raise EngineServiceError(grpc.StatusCode.NOT_FOUND, f"no task with id {found!r}")
            if first or record.revision > revision:
                checks = await self.store.checks_after(found, revision)
                yield engine_pb2.WatchTaskResponse(
                    task=task_to_proto(record, view=_BASIC),
                    checks=[check_to_proto(check) for check in checks],
                )
                revision, first = record.revision, False
                if record.is_terminal:
                    return
            await asyncio.sleep(self._poll_s)
            if isinstance(self.store, SqliteStore):
                self.polled = self.store.holder() is not None

    async def cancel(self, task_id: str) -> engine_pb2.Task:
        """Refused: a store is read-only from the command line."""
        raise UsageError(
            f"tasks cancel needs a running engine: {store_name(self.spec)} is only read from "
            f"here; start `asyncplugin engine serve {store_option(self.spec)}` and give --engine "
            "HOST:PORT"
        )

    def follow_hint(self, task_id: str) -> str:
        """--store SPEC."""
        return store_option(self.spec)


def open_source(args: argparse.Namespace) -> TaskSource:
    """The source the command line names: --engine (or $ASYNCPLUGIN_ENGINE), else --store.

    An explicit --store wins over $ASYNCPLUGIN_ENGINE; --engine and --store together are a
    UsageError.
    """
    if args.engine is not None and args.store is not None:
        raise UsageError(
            "give --engine (a running daemon) or --store (read a store file), not both"
        )
    if args.store is not None:
        refuse_engine_options(args, because="is for a daemon, not with --store")
        return StoreSource(store_spec(args))
    link = engine_link(args)
    if link is not None:
        return DaemonSource(link, connect_timeout_s=args.connect_timeout)
    return StoreSource(store_spec(args))

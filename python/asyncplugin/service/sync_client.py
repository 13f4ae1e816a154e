"""SyncEngineClient: `EngineClient` with blocking methods, on an event loop in its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from asyncplugin.engine.v1 import engine_pb2

if TYPE_CHECKING:
    from .client import EngineClient

__all__ = ["SyncEngineClient"]

_T = TypeVar("_T")


class SyncEngineClient:
    """`EngineClient` with blocking methods (one event loop in a background thread).

    Takes EngineClient's arguments. Use as a context manager, or call `close()`.
    """

    def __init__(self, address: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="asyncplugin-engine-client", daemon=True
        )
        self._thread.start()
        try:
            self.client = self._run(self._make(address, options))
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _make(address: str, options: dict[str, Any]) -> EngineClient:
        # Imported here: client.py imports this module to offer both clients from one place.
        from .client import EngineClient

        return EngineClient(address, **options)

    def __enter__(self) -> SyncEngineClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel, then the loop and its thread."""
        if self._thread.is_alive():
            try:
                self._run(self.client.close())
            finally:
                self._stop_loop()

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def submit(self, target: str, **options: Any) -> engine_pb2.Task:
        """See `EngineClient.submit`."""
        return self._run(self.client.submit(target, **options))

    def submit_request(
        self, request: engine_pb2.SubmitTaskRequest
    ) -> engine_pb2.SubmitTaskResponse:
        """See `EngineClient.submit_request`."""
        return self._run(self.client.submit_request(request))

    def get(self, task_id: str, **options: Any) -> engine_pb2.Task:
        """See `EngineClient.get`."""
        return self._run(self.client.get(task_id, **options))

    def list(self, **filters: Any) -> engine_pb2.ListTasksResponse:
        """See `EngineClient.list`."""
        return self._run(self.client.list(**filters))

    def list_all(self, **filters: Any) -> Iterator[engine_pb2.Task]:
        """See `EngineClient.list_all`."""
        return self._iterate(self.client.list_all(**filters))

    def cancel(self, task_id: str) -> engine_pb2.Task:
        """See `EngineClient.cancel`."""
        return self._run(self.client.cancel(task_id))

    def watch(self, task_id: str, **options: Any) -> Iterator[engine_pb2.WatchTaskResponse]:
        """See `EngineClient.watch` (a blocking iterator)."""
        return self._iterate(self.client.watch(task_id, **options))

    def wait(self, task_id: str, **options: Any) -> engine_pb2.Task:
        """See `EngineClient.wait`."""
        return self._run(self.client.wait(task_id, **options))

    def complete(self, completion_token: str, **outcome: Any) -> engine_pb2.CompleteTaskResponse:
        """See `EngineClient.complete`."""
        return self._run(self.client.complete(completion_token, **outcome))

    def update(self, completion_token: str, **changes: Any) -> engine_pb2.UpdateTaskResponse:
        """See `EngineClient.update`."""
        return self._run(self.client.update(completion_token, **changes))

    def _iterate(self, iterator: AsyncIterator[_T]) -> Iterator[_T]:
        async def step() -> _T:
            return await iterator.__anext__()

        try:
            while True:
                try:
                    yield self._run(step())
                except StopAsyncIteration:
                    return
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None and self._thread.is_alive():
                self._run(closer())

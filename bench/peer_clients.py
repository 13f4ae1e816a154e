"""The clients of the peer benchmark, each run in a fresh spawned process (see `bench.peers`).

Every client does the same work: start N jobs on the "jobs" plugin (each ends `duration_s` of
wall time after it starts), poll each to its end, hold every result. Four ways:

- engine: one `Engine` (MemoryStore), `submit` N tasks, then `wait` for all of them. Its own
  defaults, or its `PollingPolicy` set to the shared schedule.
- polling_future: google-api-core's threaded `PollingFuture`, as a user of that library writes
  it: a subclass whose `done()` sends one status check through the generated stub on a sync
  channel; one thread per operation sends the initiating call, then blocks in `result()`.
- async_future: google-api-core's asyncio `AsyncFuture` (what `operation_async.AsyncOperation`
  builds on): a subclass whose `done()` awaits one status check on a grpc.aio stub; one
  coroutine per operation, no bound but the library's.
- raw: the floor, a hand-written asyncio loop on grpc.aio: a coroutine per operation sends the
  initiating call, then sleeps, checks, repeats, every call under one semaphore of 64; requests
  encoded and answers decoded by hand (only what polling needs).

"Own defaults": the engine's `PollingPolicy()` (1 s x1.6 up to 60 s, +-20%);
`polling.DEFAULT_POLLING` for PollingFuture (checks at once, then uniform(0, cap) with the cap
1 s x1.5 up to 20 s); `async_future.DEFAULT_RETRY` for AsyncFuture (checks at once, then
uniform(0, cap) with the cap 1 s x2 up to 60 s). The raw loop has no defaults of its own.

"Shared": ONE schedule for every client, the `Schedule` given: the first check one interval after
the initiating answer, interval n drawn as the engine draws it (base = initial x multiplier^(n-1)
capped, +-jitter uniform). The api-core clients keep their own machinery (the `Retry` loop,
`_OperationNotComplete`, sleeping in `retry_target`), only its sleep generator is the shared one,
and their first `done()` takes the initiating answer instead of checking at once.

Each returns what it measured from its first call to its last result: CPU seconds of the process
(every thread) and of the main thread alone (the rest is grpc's own threads, or the operation
threads of PollingFuture), wall time, peak RSS (`ru_maxrss`, fresh process) and the RSS before
the work, calls sent, voluntary context switches, and for asyncio clients the event loop's
wake-ups (`select` calls that returned).
"""

from __future__ import annotations

import asyncio
import functools
import random
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ._common import cpu_s, peak_rss_bytes, rss_bytes, run_loop

METHOD = "/asyncplugin.v1.PluginService/Invoke"
CALL_TIMEOUT_S = 300.0
"""Every hand-written client's per-call deadline. At 10,000 operations the threaded client's
threads keep calls waiting for the GIL and the cores for more than 30 s (3,490 of 10,000
operations once failed DEADLINE_EXCEEDED at 30 s): the comparison is of the same work done, so
every operation is polled to its end, however late."""
RAW_BOUND = 64
"""The raw loop's semaphore: the engine's default `max_concurrent_rpcs`."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A polling schedule every client can follow: the engine's backoff formula."""

    initial_s: float = 1.0
    multiplier: float = 1.5
    max_s: float = 20.0
    jitter: float = 0.2
    min_s: float = 0.5

    def interval(self, n: int, rng: random.Random) -> float:
        """The interval before status check n (1 = the first check after the answer)."""
        base = min(self.initial_s * self.multiplier ** (n - 1), self.max_s)
        low = max(self.min_s, base * (1 - self.jitter))
        high = min(self.max_s, base * (1 + self.jitter))
        return low + rng.random() * (high - low)

    def intervals(self, rng: random.Random) -> Iterator[float]:
        """Every interval in order: the sleep generator handed to api-core's retry loop."""
        n = 0
        while True:
            n += 1
            yield self.interval(n, rng)

    def describe(self) -> str:
        return (
            f"{self.initial_s:g} s x{self.multiplier:g} up to {self.max_s:g} s, +-{self.jitter:.0%}"
        )


class _Meter:
    """CPU, wall time, context switches and RSS between `start` and `stop`."""

    def start(self) -> None:
        self.idle_rss = rss_bytes()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._csw0 = usage.ru_nvcsw
        self._cpu0, self._main0 = cpu_s(), time.thread_time()
        self._t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t0
        cpu, main = cpu_s() - self._cpu0, time.thread_time() - self._main0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "cpu_s": cpu,
            "main_cpu_s": main,
            "wall_s": wall,
            "peak_rss": float(peak_rss_bytes()),
            "idle_rss": float(self.idle_rss),
            "voluntary_switches": float(usage.ru_nvcsw - self._csw0),
        }


class _LoopWakeups:
    """Counts the event loop's wake-ups: its selector's `select` calls (asyncio's loop only)."""

    def __init__(self) -> None:
        self.count = 0
        self._selector: Any = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        selector = getattr(loop, "_selector", None)
        if selector is None:  # uvloop: no Python-level selector to count
            return
        original = selector.select

        def select(timeout: float | None = None) -> Any:
            self.count += 1
            return original(timeout)

        selector.select = select
        self._selector = selector

    def remove(self) -> None:
        if self._selector is not None:
            del self._selector.select


def _payload(duration_s: float) -> bytes:
    from asyncplugin.protocol import encode_payload

    return encode_payload({"duration_s": duration_s})


# -- the engine --------------------------------------------------------------------------------


def engine_client(
    target: str,
    durations: list[float],
    schedule: Schedule | None,
    loop: str = "asyncio",
    variant: str = "",
) -> dict[str, float]:
    """Child: one Engine submits N tasks and waits for all of them.

    `variant` is for `bench.attribution` (see there); "" is the engine as it ships.
    """
    return run_loop(_engine(target, durations, schedule, variant), loop)


async def _engine(
    target: str, durations: list[float], schedule: Schedule | None, variant: str
) -> dict[str, float]:
    from asyncplugin.engine import Engine, MemoryStore, PollingPolicy
    from asyncplugin.protocol import TaskState

    from .attribution import apply_variant

    policy = PollingPolicy()
    if schedule is not None:
        policy = PollingPolicy(
            initial_interval_s=schedule.initial_s,
            multiplier=schedule.multiplier,
            max_interval_s=schedule.max_s,
            min_interval_s=schedule.min_s,
            jitter=schedule.jitter,
        )
    undo = apply_variant(variant)
    engine = Engine(store=MemoryStore(), policy=policy)
    await engine.start()
    wakeups = _LoopWakeups()
    meter = _Meter()
    profiler = _profiler_for(variant)
    wakeups.install()
    meter.start()
    if profiler is not None:
        profiler.enable()
    ids = [await engine.submit(target, method=METHOD, payload={"duration_s": d}) for d in durations]
    records = await asyncio.gather(*(engine.wait(task_id) for task_id in ids))
    if profiler is not None:
        profiler.disable()
    result = meter.stop()
    wakeups.remove()
    checks = sum(record.check_count for record in records)
    await engine.stop()
    undo()
    done = sum(1 for r in records if r.state is TaskState.SUCCEEDED)
    if done != len(durations):
        raise RuntimeError(f"only {done} of {len(durations)} tasks succeeded")
    result.update(
        checks=float(checks),
        calls=float(checks + len(durations)),
        done=float(done),
        wakeups=float(wakeups.count),
    )
    _add_profile(result, profiler)
    return result


def _profiler_for(variant: str) -> Any:
    if variant != "profile":
        return None
    from .attribution import profiler

    return profiler()


# -- google-api-core: the threaded PollingFuture -----------------------------------------------


def _shared_retry_classes(schedule: Schedule, seed: int) -> tuple[Any, Any]:
    """api-core's `Retry` and `AsyncRetry`, their sleep generator the shared schedule's.

    Only the sleep generator changes: the wrapped call still goes through the library's own
    `retry_target` (exceptions, predicate, sleeping). Copies made by `with_timeout` keep it.
    """
    from google.api_core.retry import retry_unary, retry_unary_async

    rng = random.Random(seed)

    class SharedRetry(retry_unary.Retry):  # type: ignore[misc,unused-ignore]
        def __call__(self, func: Any, on_error: Any = None) -> Any:
            @functools.wraps(func)
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                return retry_unary.retry_target(
                    functools.partial(func, *args, **kwargs),
                    self._predicate,
                    schedule.intervals(rng),
                    timeout=self._timeout,
                    on_error=on_error,
                )

            return wrapped

    class SharedAsyncRetry(retry_unary_async.AsyncRetry):  # type: ignore[misc,unused-ignore]
        def __call__(self, func: Any, on_error: Any = None) -> Any:
            @functools.wraps(func)
            async def wrapped(*args: Any, **kwargs: Any) -> Any:
                return await retry_unary_async.retry_target(
                    functools.partial(func, *args, **kwargs),
                    predicate=self._predicate,
                    sleep_generator=schedule.intervals(rng),
                    timeout=self._timeout,
                    on_error=on_error,
                )

            return wrapped

    return SharedRetry, SharedAsyncRetry


def polling_future_client(
    target: str, durations: list[float], schedule: Schedule | None
) -> dict[str, float]:
    """Child: one thread per operation, each polled by a PollingFuture."""
    import grpc
    from google.api_core.future import polling

    from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc

    polling_config: Any = polling.DEFAULT_POLLING
    if schedule is not None:
        shared_retry, _ = _shared_retry_classes(schedule, seed=11)
        polling_config = shared_retry(predicate=polling.POLLING_PREDICATE, timeout=None)

    class PluginOperation(polling.PollingFuture):  # type: ignore[misc,unused-ignore]
        """An asynchronous plugin call seen as a google-api-core long-running operation."""

        def __init__(self, stub: Any, payload: bytes, key: str, first: Any) -> None:
            super().__init__(polling=polling_config)  # type: ignore[no-untyped-call,unused-ignore]
            self._stub = stub
            self._payload = payload
            self._key = key
            self._status = first.status
            # On the shared schedule the first interval runs before the first check, as in
            # every other client; on its defaults api-core checks at once.
            self._skip_first = schedule is not None
            self.checks = 0

        def done(self, retry: Any = None) -> bool:
            if self._result_set:
                return True
            if self._skip_first:
                self._skip_first = False
                return False
            self.checks += 1
            request = plugin_pb2.InvokeRequest(
                data=self._payload,
                is_status_check=True,
                status=self._status,
                context=plugin_pb2.RequestContext(
                    idempotency_key=self._key, check_number=self.checks
                ),
            )
            answer = self._stub.Invoke(request, timeout=CALL_TIMEOUT_S)
            if answer.HasField("data"):
                self.set_result(answer.data)  # type: ignore[no-untyped-call,unused-ignore]
                return True
            self._status = answer.status
            return False

        def cancel(self) -> bool:
            return False

        def cancelled(self) -> bool:
            return False

    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = plugin_pb2_grpc.PluginServiceStub(channel)
    results: list[Any] = [None] * len(durations)
    checks = [0] * len(durations)
    errors: list[BaseException] = []

    def operation(i: int, duration_s: float) -> None:
        try:
            payload = _payload(duration_s)
            key = f"op-{i}"
            first = stub.Invoke(
                plugin_pb2.InvokeRequest(
                    data=payload, context=plugin_pb2.RequestContext(idempotency_key=key)
                ),
                timeout=CALL_TIMEOUT_S,
            )
            future = PluginOperation(stub, payload, key, first)
            results[i] = future.result(timeout=None)  # type: ignore[no-untyped-call,unused-ignore]
            checks[i] = future.checks
        except BaseException as err:  # reported to the parent below
            errors.append(err)

    meter = _Meter()
    meter.start()
    threads = [
        threading.Thread(target=operation, args=(i, d), daemon=True)
        for i, d in enumerate(durations)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = meter.stop()
    channel.close()
    if errors:
        raise RuntimeError(f"{len(errors)} operations failed, first: {errors[0]!r}")
    result.update(
        checks=float(sum(checks)),
        calls=float(sum(checks) + len(durations)),
        done=float(sum(1 for r in results if r is not None)),
    )
    return result


# -- google-api-core: the asyncio AsyncFuture ---------------------------------------------------


def async_future_client(
    target: str, durations: list[float], schedule: Schedule | None, loop: str = "asyncio"
) -> dict[str, float]:
    """Child: one coroutine per operation, each awaiting an AsyncFuture's `result()`."""
    return run_loop(_async_future(target, durations, schedule), loop)


async def _async_future(
    target: str, durations: list[float], schedule: Schedule | None
) -> dict[str, float]:
    from google.api_core.future import async_future
    from grpc import aio

    from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc

    retry_config: Any = async_future.DEFAULT_RETRY
    if schedule is not None:
        _, shared_async_retry = _shared_retry_classes(schedule, seed=13)
        retry_config = shared_async_retry(predicate=async_future.RETRY_PREDICATE, timeout=None)

    class PluginOperation(async_future.AsyncFuture):  # type: ignore[misc,unused-ignore]
        """An asynchronous plugin call as an api-core asyncio long-running operation."""

        def __init__(self, stub: Any, payload: bytes, key: str, first: Any) -> None:
            super().__init__(retry=retry_config)  # type: ignore[no-untyped-call,unused-ignore]
            self._stub = stub
            self._payload = payload
            self._key = key
            self._status = first.status
            self._skip_first = schedule is not None
            self.checks = 0

        async def done(self, retry: Any = None) -> bool:
            if self._future.done():
                return True
            if self._skip_first:
                self._skip_first = False
                return False
            self.checks += 1
            request = plugin_pb2.InvokeRequest(
                data=self._payload,
                is_status_check=True,
                status=self._status,
                context=plugin_pb2.RequestContext(
                    idempotency_key=self._key, check_number=self.checks
                ),
            )
            answer = await self._stub.Invoke(request, timeout=CALL_TIMEOUT_S)
            if answer.HasField("data"):
                self.set_result(answer.data)  # type: ignore[no-untyped-call,unused-ignore]
                return True
            self._status = answer.status
            return False

        def cancel(self) -> bool:
            return False

        def cancelled(self) -> bool:
            return False

    async with aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        stub = plugin_pb2_grpc.PluginServiceStub(channel)

        async def operation(i: int, duration_s: float) -> tuple[Any, int]:
            payload = _payload(duration_s)
            key = f"op-{i}"
            first = await stub.Invoke(
                plugin_pb2.InvokeRequest(
                    data=payload, context=plugin_pb2.RequestContext(idempotency_key=key)
                ),
                timeout=CALL_TIMEOUT_S,
            )
            future = PluginOperation(stub, payload, key, first)
            value = await future.result(timeout=None)  # type: ignore[no-untyped-call,unused-ignore]
            return value, future.checks

        wakeups = _LoopWakeups()
        meter = _Meter()
        wakeups.install()
        meter.start()
        outcomes = await asyncio.gather(*(operation(i, d) for i, d in enumerate(durations)))
        result = meter.stop()
        wakeups.remove()
    checks = sum(n for _, n in outcomes)
    result.update(
        checks=float(checks),
        calls=float(checks + len(durations)),
        done=float(sum(1 for value, _ in outcomes if value is not None)),
        wakeups=float(wakeups.count),
    )
    return result


# -- the floor: a hand-written asyncio loop on grpc.aio ------------------------------------------


def raw_client(
    target: str,
    durations: list[float],
    schedule: Schedule | None,
    loop: str = "asyncio",
    variant: str = "",
    bound: int = RAW_BOUND,
) -> dict[str, float]:
    """Child: a coroutine per operation, sleep-check-repeat, calls under a semaphore.

    `variant` "profile" runs it under cProfile (see `bench.attribution`).
    """
    if schedule is None:
        raise ValueError("the raw loop runs on a given schedule only")
    return run_loop(_raw(target, durations, schedule, bound, variant), loop)


async def _raw(
    target: str, durations: list[float], schedule: Schedule, bound: int, variant: str
) -> dict[str, float]:
    from grpc import aio

    from asyncplugin.v1 import plugin_pb2

    rng = random.Random(17)
    semaphore = asyncio.Semaphore(bound)
    invoke_request = plugin_pb2.InvokeRequest
    request_context = plugin_pb2.RequestContext
    decode: Callable[[bytes], Any] = plugin_pb2.InvokeResponse.FromString

    async with aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)

        async def operation(i: int, duration_s: float) -> tuple[bytes, int]:
            payload = _payload(duration_s)
            key = f"op-{i}"
            request = invoke_request(
                data=payload, context=request_context(idempotency_key=key)
            ).SerializeToString()
            async with semaphore:
                answer = decode(await call(request, timeout=CALL_TIMEOUT_S))
            n = 0
            while not answer.HasField("data"):
                n += 1
                await asyncio.sleep(schedule.interval(n, rng))
                request = invoke_request(
                    data=payload,
                    is_status_check=True,
                    status=answer.status,
                    context=request_context(idempotency_key=key, check_number=n),
                ).SerializeToString()
                async with semaphore:
                    answer = decode(await call(request, timeout=CALL_TIMEOUT_S))
            return answer.data, n

        wakeups = _LoopWakeups()
        meter = _Meter()
        profiler = _profiler_for(variant)
        wakeups.install()
        meter.start()
        if profiler is not None:
            profiler.enable()
        outcomes = await asyncio.gather(*(operation(i, d) for i, d in enumerate(durations)))
        if profiler is not None:
            profiler.disable()
        result = meter.stop()
        wakeups.remove()
    checks = sum(n for _, n in outcomes)
    result.update(
        checks=float(checks),
        calls=float(checks + len(durations)),
        done=float(sum(1 for data, _ in outcomes if data)),
        wakeups=float(wakeups.count),
    )
    _add_profile(result, profiler)
    return result


def _add_profile(result: dict[str, Any], profiler: Any) -> None:
    if profiler is not None:
        from .attribution import summarize_profile, top_functions

        result["profile"] = summarize_profile(profiler)
        result["top"] = top_functions(profiler)


CLIENTS: dict[str, Callable[..., dict[str, float]]] = {
    "engine": engine_client,
    "polling_future": polling_future_client,
    "async_future": async_future_client,
    "raw": raw_client,
}
LABELS = {
    "engine": "engine",
    "polling_future": "api-core PollingFuture (threads)",
    "async_future": "api-core AsyncFuture (asyncio)",
    "raw": "raw grpc.aio loop, semaphore 64",
}

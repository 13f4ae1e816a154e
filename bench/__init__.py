"""Benchmarks of the asyncplugin engine and plugin SDK (issue 6): `python -m bench [--quick]`.

Every figure is measured next to its baseline in the same run, on this machine, and printed in
one table with the ratio and whether the target is met. One module per benchmark:

- `throughput`: status checks per second, engine (memory, SQLite) vs a raw grpc.aio client, and
  the plugin SDK server vs a bare generated servicer.
- `scale`: RSS per in-flight task with 100k RUNNING tasks, time to schedule and to resume them.
- `lateness`: how late status checks fire at a given rate with 100k tasks pending.
- `detection`: simulated detection delay and checks per task for several polling schedules.
- `peers`: the engine against google-api-core's threaded `PollingFuture` and asyncio
  `AsyncFuture`, each on its own defaults and all on one shared schedule (the spread-out
  regime), with the raw grpc.aio loop on the same schedule as the floor (`peer_clients` holds
  the clients).
- `observability`: status checks per second with tracing and metrics on against off.
- `attribution`: where the engine's extra client CPU per call goes in the spread-out regime
  (threads, wake-ups, A/B of single mechanisms, a profile next to the raw loop's).

Servers and measured clients run in separate processes started with the spawn method (forking
while a grpc.aio channel is live hangs the child).
"""

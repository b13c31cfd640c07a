"""Per-event cost of publish -> handler on the in-process bus, as a ratio to a direct pluggy hook call.

Run: ``python benchmarks/bus.py [--events N] [--repeat R]``. Both sides call the same hook implementation
(``billing_create_user`` of a provider that only counts), in the same process and run:

- baseline: ``pm.hook.billing_create_user(event=e)``, a direct pluggy call, per event;
- bus (batch): ``bus.put_events(batch of 100)`` until every event has run the hook in the binding's worker
  (routing, event log, dedup with the default window, queueing, thread hand-off, delivery bookkeeping);
- bus (publish): ``bus.publish(e)`` one event at a time, as a provider's ``context.publish`` does.

The bus side goes through the production path (``build_providers`` + ``Bus.bind``, so ``Providers.call``
with its selection check). The best of R rounds is reported for each, every round timing all three, so a
noisy neighbour slows them alike; the target is a ratio <= 10.
No assertion: this prints what it measured.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this directory comes first on sys.path and its http.py would shadow the standard
# library's http (which Starlette imports): keep it, but last, for _report.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0]) == _HERE:
    sys.path.append(sys.path.pop(0))

import argparse  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from sbt_core import Provider, hookimpl  # noqa: E402
from sbt_core.bindings import build_binding_table  # noqa: E402
from sbt_core.config import load_config  # noqa: E402
from sbt_core.models import Event  # noqa: E402
from sbt_core.plugins import build_providers, discover  # noqa: E402
from sbt_core.runtime.bus import Bus  # noqa: E402

TARGET_RATIO = 10.0
BATCH = 100


class CountingBilling(Provider):
    """The least a billing provider can do: count the events it is handed."""

    count = 0

    @hookimpl
    def billing_create_customer(self, event: Event) -> None:
        pass

    @hookimpl
    def billing_delete_customer(self, event: Event) -> None:
        pass

    @hookimpl
    def billing_create_user(self, event: Event) -> None:
        CountingBilling.count += 1


def best_of(repeat: int, *runs: Callable[[], float]) -> list[float]:
    """The smallest of ``repeat`` timings (seconds) of each of ``runs``, taken in rounds (each round times
    every run once), so a machine that slows down for a while slows the baseline and the bus alike rather
    than only whichever was being timed. The GC is off inside each timed section (a run builds its inputs
    before it starts the clock), as timeit does."""
    results: list[list[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for run, timings in zip(runs, results, strict=True):
            gc.collect()
            timings.append(run())
    return [min(timings) for timings in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (best kept)")
    parser.add_argument("--nats", action="store_true",
                        help="also put_events x100 on the NATS JetStream transport (SBT_BENCH_NATS_URL, default "
                             "nats://127.0.0.1:4222), as a throughput ratio to the in-process transport")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    n = args.events

    catalog = discover(entry_points=False, builtins=False, extra={"counting": CountingBilling}, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        # The default [events] rules, dedup included: every timed run gets fresh event ids.
        config = load_config(catalog, None, raw={"state_dir": tmp, "providers": {"billing": {"type": "counting"}}})
        providers = build_providers(catalog, config, state_dir=Path(tmp))

        def fresh() -> list[Event]:
            return [Event.create("tenantUserCreated", {"tenantId": "t1", "userId": f"u{i}"}) for i in range(n)]

        events = fresh()

        hook: Any = providers.pm.hook.billing_create_user

        def direct() -> float:
            gc.disable()
            start = time.perf_counter()
            for event in events:
                hook(event=event)
            elapsed = time.perf_counter() - start
            gc.enable()
            return elapsed

        bus = Bus(config.events)
        bus.bind(build_binding_table(catalog, config), providers)
        bus.start()

        def batched() -> float:
            events = fresh()
            before = CountingBilling.count
            gc.disable()
            start = time.perf_counter()
            for i in range(0, n, BATCH):
                bus.put_events(events[i:i + BATCH])
            bus.join()
            elapsed = time.perf_counter() - start
            gc.enable()
            assert CountingBilling.count - before == n, "not every event reached the hook"
            return elapsed

        def published() -> float:
            events = fresh()
            before = CountingBilling.count
            gc.disable()
            start = time.perf_counter()
            for event in events:
                bus.publish(event)
            bus.join()
            elapsed = time.perf_counter() - start
            gc.enable()
            assert CountingBilling.count - before == n, "not every event reached the hook"
            return elapsed

        baseline, batch, single = (best / n for best in best_of(args.repeat, direct, batched, published))
        on_nats = nats_batched(config, catalog, providers, fresh, n, args.repeat) / n if args.nats else None
        bus.stop()

    print(f"events per run: {n}, best of {args.repeat}")
    print(f"direct pluggy hook call : {baseline * 1e6:8.2f} us/event")
    print(f"bus put_events (x{BATCH})  : {batch * 1e6:8.2f} us/event  ratio {batch / baseline:5.1f}x")
    print(f"bus publish (one by one): {single * 1e6:8.2f} us/event  ratio {single / baseline:5.1f}x")
    met, met_single = batch / baseline <= TARGET_RATIO, single / baseline <= TARGET_RATIO
    print(f"target <= {TARGET_RATIO:.0f}x: batched {'meets' if met else 'misses'}, "
          f"one by one {'meets' if met_single else 'misses'}")

    from _report import Figure, report

    extra = []
    if on_nats is not None:
        ratio = batch / on_nats  # events/s on NATS over events/s in process
        print(f"bus put_events (x{BATCH}) on NATS JetStream: {on_nats * 1e6:8.2f} us/event  throughput ratio to "
              f"in-process {ratio:4.2f} (target >= 0.5)")
        extra.append(Figure("bus", "publish->handler, put_events x100, NATS transport", on_nats * 1e6, "us/event",
                            ratio, "in-process transport (throughput), same run", ">= 0.5", ratio >= 0.5))
    target = f"<= {TARGET_RATIO:.0f}x"
    report(extra + [
        Figure("bus", "publish->handler, put_events x100", batch * 1e6, "us/event", batch / baseline,
               "direct pluggy hook call", target, met),
        Figure("bus", "publish->handler, one by one", single * 1e6, "us/event", single / baseline,
               "direct pluggy hook call", target, met_single),
    ])


def nats_batched(config: Any, catalog: Any, providers: Any, fresh: Callable[[], list[Event]], n: int,
                 repeat: int) -> float:
    """Best seconds for ``n`` events put 100 at a time on a bus on the NATS transport (a stream of its own,
    deleted after) until every one reached the hook."""
    import uuid

    from sbt_core.runtime.bus.nats_transport import NatsTransport

    tag = uuid.uuid4().hex[:10]
    transport = NatsTransport(os.environ.get("SBT_BENCH_NATS_URL", "nats://127.0.0.1:4222"),
                              stream=f"SBT_BENCH_{tag}", subject_prefix=f"sbt_bench.{tag}")
    bus = Bus(config.events, transport=transport)
    bus.bind(build_binding_table(catalog, config), providers)
    bus.start()

    def run() -> float:
        events = fresh()
        until = CountingBilling.count + n
        gc.disable()
        start = time.perf_counter()
        for i in range(0, n, BATCH):
            bus.put_events(events[i:i + BATCH])
        while CountingBilling.count < until:  # delivered by this process's worker (a shared transport's
            time.sleep(0.0005)                # join() sees only what it has received)
        elapsed = time.perf_counter() - start
        gc.enable()
        return elapsed

    try:
        return best_of(repeat, run)[0]
    finally:
        bus.stop()
        transport_ = NatsTransport(os.environ.get("SBT_BENCH_NATS_URL", "nats://127.0.0.1:4222"),
                                   stream=f"SBT_BENCH_{tag}", subject_prefix=f"sbt_bench.{tag}")
        transport_._run(transport_._js._jsm.delete_stream(transport_.stream), 10)
        transport_.close()


if __name__ == "__main__":
    main()

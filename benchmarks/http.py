"""``POST /events`` throughput through the real app, as a ratio to a bare Starlette endpoint.

Both apps get the same 100-event PutEvents body (``ingestUsage`` entries) through the same minimal
in-process ASGI driver (no network, no HTTP client, so the ratio measures the apps and not a client):

- **sbt**: the real control plane (``ControlPlane.from_config``: local auth, a no-op metering provider,
  the in-process bus delivering every event to ``metering_ingest_usage_event`` in its worker thread),
  with a bearer token, so each request pays the body limit, JWT verification, scope check, per-entry
  parsing into envelopes and ``Bus.put_events``;
- **bare**: a Starlette route that parses the same JSON (``await request.json()``) and answers a
  small JSON object;
- **per-event work alone** (``ingestUsage`` only, for reference): a Starlette route doing only what sbt must
  do for each entry whatever runtime surrounds it — sbt's own entry checks and envelopes
  (``parse_entries``), the ``UsageEvent`` the ingest hook takes (``UsageEvent.from_events``) and an
  ``EventId`` per entry in the answer — with no authorizer, bus, event log or worker thread. Its ratio to
  bare is as high as the delivered ratio can go without making that per-event work cheaper.

A third comparison, **durable** (``--mode durable``, and part of ``all``), is sbt against sbt: the real
control plane with the ``memory`` metering provider, ``POST /events`` of the same body driven by
``--concurrency`` requests at a time (as several clients would; the in-process driver otherwise sends
one at a time), durable as ``sbt serve`` runs by default — the SQLite transport (``[events] transport =
"sqlite"``: every answer waits for its events' commit, concurrent requests share one) and memory
metering's write-ahead log (``durable = true``, ``fsync = "batch"``) — as a ratio to the in-process
transport with metering in memory only (``durable = false``); the delivered rate is the one that counts
(target: at least 0.7).

**NATS** (``--mode nats``, and part of ``all``): the same durable-style comparison with the bus on NATS
JetStream (``[events] transport = "nats"``, a stream of the run's own on ``SBT_BENCH_NATS_URL``, default
``nats://127.0.0.1:4222``) against the in-process transport, memory metering without its log, one process
(target: at least 0.5); a NATS round ends once JetStream holds no un-acked event. **Two processes**
(``--mode nats2``, and part of ``nats`` and ``all``): two uvicorn servers sharing one stream against one
server on a stream of its own, the clients spread over the servers; on a 2-core machine the processes,
nats-server and the client share the cores, which bounds the ratio.

Prints requests/s and events/s of each and ``ratio = sbt / bare`` (a figure to watch; its former target of
0.5 is retired, durability first), measured
interleaved in the same run (best of several rounds, so a noisy neighbour hurts both alike). Each sbt
round ends by waiting until its bus has delivered everything it accepted, so no delivery runs during a
bare round. For ``ingestUsage`` two sbt rates are shown: *answered* (requests answered per second of
requests) and *delivered* (the same requests over the time until every event reached the hook: the
sustained rate, as the delivery worker shares the interpreter with the HTTP path). The benchmark process's
garbage collector is tuned as ``sbt serve`` tunes its own (``tune_gc_for_serving``). Over uvicorn the sbt
server runs through ``ControlPlane.serve``, as ``sbt serve`` does, and the wait polls ``GET /events``. Each
ratio is also printed as an ``SBT-BENCH`` line (``_report.py``).

    python benchmarks/http.py [--rounds 5] [--seconds 1.0] [--mode all|asgi|uvicorn|durable|nats|nats2]
                              [--concurrency 4]
"""

from __future__ import annotations

import os
import sys

# This file is named http.py: run as a script, its directory would shadow the standard library's http.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from sbt_core import Provider, hookimpl  # noqa: E402
from sbt_core.config import load_config  # noqa: E402
from sbt_core.models import Event, MeterCreate, Page, UsageEvent  # noqa: E402
from sbt_core.plugins import discover  # noqa: E402
from sbt_core.runtime.control_plane import ControlPlane, tune_gc_for_serving  # noqa: E402
from sbt_core.runtime.http.events import parse_entries  # noqa: E402

BATCH = 100
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


class NoopMetering(Provider):
    """The required IMetering hooks (and the ingest batch form), doing nothing: the benchmark measures the
    HTTP side and the bus."""

    @hookimpl
    def metering_create_meter(self, meter):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    @hookimpl
    def metering_fetch_meter(self, meter_id):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    @hookimpl
    def metering_fetch_all_meters(self, limit, next_token):  # type: ignore[no-untyped-def]
        return Page()

    @hookimpl
    def metering_ingest_usage_event(self, usage_event):  # type: ignore[no-untyped-def]
        return None

    @hookimpl
    def metering_ingest_usage_events(self, usage_events):  # type: ignore[no-untyped-def]
        # The batch form, as the memory provider implements it: the bus delivers bursts through it.
        return [None] * len(usage_events)

    @hookimpl
    def metering_fetch_usage(self, meter_id, query):  # type: ignore[no-untyped-def]
        return Page()


def body(detail_type: str) -> bytes:
    """A PutEvents body of ``BATCH`` entries (Detail as JSON text, as PutEvents sends it)."""
    entries = [{"Source": "sbt.application.plane", "DetailType": detail_type,
                "Detail": json.dumps({"tenantId": f"t-{i % 7}", "eventName": "api_call",
                                      "properties": {"value": i, "region": "eu"}})} for i in range(BATCH)]
    return json.dumps({"Entries": entries}).encode()


def bare_app() -> Starlette:
    async def events(request: Request) -> JSONResponse:
        data = await request.json()
        return JSONResponse({"FailedEntryCount": 0, "count": len(data["Entries"])})

    return Starlette(routes=[Route("/events", events, methods=["POST"])])


def per_event_work_app() -> Starlette:
    """sbt's per-event work for an ``ingestUsage`` body and nothing else (see the module docstring)."""

    async def events(request: Request) -> Response:
        parsed = parse_entries(orjson.loads(await request.body()))
        envelopes = [p for p in parsed if isinstance(p, Event)]
        UsageEvent.from_events(envelopes)  # what the bus's worker builds for the ingest hook
        answer = {"FailedEntryCount": 0, "Entries": [{"EventId": e.id} for e in envelopes]}
        return Response(orjson.dumps(answer), media_type="application/json")

    return Starlette(routes=[Route("/events", events, methods=["POST"])])


async def post(app: ASGIApp, payload: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One ``POST /events`` through ``app``; the response status."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/events", "raw_path": b"/events", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(payload)).encode()), *headers],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080)}
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def rate(app: ASGIApp, payload: bytes, headers: list[tuple[bytes, bytes]], seconds: float,
               settle: Callable[[], object] | None = None) -> tuple[float, float]:
    """Requests per second over about ``seconds``: as answered, and including ``settle()`` (the time the
    bus then needs to deliver everything accepted) when given."""
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            status = await post(app, payload, headers)
            if status != 200:
                raise SystemExit(f"POST /events answered {status}")
        count += 10
    answered = count / elapsed
    if settle is not None:
        settle()
    return answered, count / (time.perf_counter() - start)


def control_plane(state_dir: str, *, start: bool = True, metering: str = "noop", transport: str = "inprocess",
                  settings: dict[str, Any] | None = None, events: dict[str, Any] | None = None) -> ControlPlane:
    """The real control plane: local auth, the ``metering`` provider (``noop``, or an installed one such as
    ``memory``, with ``settings``), the bus on ``transport`` (more ``[events]`` keys in ``events``; started
    unless ``start`` is False)."""
    catalog = discover(entry_points=metering != "noop", builtins=True, extra={"noop": NoopMetering},
                       load_only=[metering] if metering != "noop" else None)
    config = load_config(catalog, raw={"state_dir": state_dir,
                                       "events": {"log_size": 1000, "transport": transport, **(events or {})},
                                       "providers": {"auth": {"type": "local"},
                                                     "metering": {"type": metering, **(settings or {})}}})
    cp = ControlPlane.from_config(catalog, config, tenants=False)
    if start:
        cp.open()
    return cp


def show(title: str, sbt: float, bare: float, *, target: bool = True) -> float:
    ratio = sbt / bare
    print(f"{title}")
    print(f"  {'sbt ' if target else 'work'}: {sbt:8.1f} req/s  {sbt * BATCH:10.0f} events/s")
    print(f"  bare: {bare:8.1f} req/s  {bare * BATCH:10.0f} events/s")
    print(f"  ratio {'sbt' if target else 'work'}/bare = {ratio:.2f}"
          + ("" if target else " (a reference)"))
    return ratio


#: (figure name, requests/s, baseline requests/s, whether it is sbt's own figure rather than a reference) of every
#: measured ratio, for the SBT-BENCH lines; the per-event-work figure is a reference.
Measured = list[tuple[str, float, float, bool]]


async def in_process(rounds: int, seconds: float) -> Measured:
    """Both apps driven in this process through the ASGI driver: the apps' own cost.

    Rounds alternate sbt, then bare (then, for ``ingestUsage``, the per-event work alone). The sbt round
    ends by waiting for the bus to deliver everything it accepted (``Bus.join``), so no delivery of an sbt
    round runs during another app's round; that wait is left out of the "answered" rate and counted in the
    "delivered" one (sustained throughput: the delivery worker shares the interpreter with the HTTP path).
    """
    measured: Measured = []
    with tempfile.TemporaryDirectory() as tmp:
        cp = control_plane(tmp)
        tune_gc_for_serving()  # as the serving process does once started (both apps run in this process)
        try:
            token = cp.providers.instances["auth"].mint_token(["event/event_write"])
            sbt_headers = [(b"authorization", f"Bearer {token}".encode())]
            bare, work = bare_app(), per_event_work_app()

            def settle() -> None:
                if not cp.bus.join(120):
                    raise SystemExit("the bus did not deliver within 120 s")

            for detail_type, what in (("ingestUsage", "ingestUsage, each delivered to metering_ingest_usage_event"),
                                      ("benchUnrouted", "a detail type no binding matches (HTTP path and bus "
                                                        "accept only)")):
                payload = body(detail_type)
                await rate(cp.asgi_app, payload, sbt_headers, 0.2, settle)  # warm up both
                await rate(bare, payload, [], 0.2)
                routed = detail_type == "ingestUsage"
                if routed:
                    await rate(work, payload, [], 0.2)
                best_sbt = best_delivered = best_bare = best_work = 0.0
                for _ in range(rounds):
                    answered, delivered = await rate(cp.asgi_app, payload, sbt_headers, seconds, settle)
                    best_sbt, best_delivered = max(best_sbt, answered), max(best_delivered, delivered)
                    best_bare = max(best_bare, (await rate(bare, payload, [], seconds))[0])
                    if routed:
                        best_work = max(best_work, (await rate(work, payload, [], seconds))[0])
                title = f"in-process ASGI, {BATCH} events per request ({len(payload)} bytes), {what}"
                if routed:
                    show(f"{title}; answered:", best_sbt, best_bare)
                    show(f"{title}; delivered (time until the bus has delivered every accepted event):",
                         best_delivered, best_bare)
                    show(f"{title}; for reference, sbt's per-event work alone (entry checks, envelopes, usage "
                         f"records, EventIds; no authorizer, bus or log):", best_work, best_bare, target=False)
                    measured += [("ASGI ingestUsage, answered", best_sbt, best_bare, True),
                                 ("ASGI ingestUsage, delivered", best_delivered, best_bare, True),
                                 ("ASGI ingestUsage, per-event work alone (reference)", best_work, best_bare, False)]
                else:
                    show(f"{title}:", best_sbt, best_bare)
                    measured.append(("ASGI unrouted, accepted", best_sbt, best_bare, True))
        finally:
            cp.close(timeout=60)
    return measured


# --- durable: the SQLite transport against the in-process one ----------------------------------------------

Rates = dict[str, tuple[float, float]]


async def delivered_rates(planes: dict[str, ControlPlane], payload: bytes, rounds: int, seconds: float,
                          concurrency: int) -> Rates:
    """Best (answered, delivered) requests/s of each control plane (by transport), ``concurrency`` requests
    of ``payload`` at a time through the ASGI driver, rounds alternating between the planes; a round ends
    once everything accepted is delivered (a shared transport: once the broker holds none un-acked)."""
    for cp in planes.values():  # the meter the events count towards
        cp.providers.call("metering_create_meter", meter=MeterCreate(name="API calls", event_name="api_call",
                                                                     group_by=("region",)))
    tune_gc_for_serving()

    async def run(cp: ControlPlane, span: float) -> tuple[float, float]:
        token = cp.providers.instances["auth"].mint_token(["event/event_write"])
        headers = [(b"authorization", f"Bearer {token}".encode())]
        count = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < span:
            statuses = await asyncio.gather(*(post(cp.asgi_app, payload, headers) for _ in range(concurrency)))
            if set(statuses) != {200}:
                raise SystemExit(f"POST /events answered {statuses}")
            count += concurrency
        answered = count / elapsed
        if cp.bus.transport.shared:
            await asyncio.to_thread(wait_nats_idle, cp.bus.transport)
        if not cp.bus.join(120):
            raise SystemExit("the bus did not deliver within 120 s")
        return answered, count / (time.perf_counter() - start)

    for cp in planes.values():
        await run(cp, 0.2)  # warm up
    best: Rates = {kind: (0.0, 0.0) for kind in planes}
    for _ in range(rounds):
        for kind, cp in planes.items():
            answered, delivered = await run(cp, seconds)
            best[kind] = (max(best[kind][0], answered), max(best[kind][1], delivered))
    return best


def report_rates(best: Rates, kind: str, label: str, target: float) -> Measured:
    """Print ``kind``'s rates against the in-process transport's and return them as measured figures."""
    measured: Measured = []
    for i, what in enumerate(("answered", "delivered")):
        rate, memory = best[kind][i], best["inprocess"][i]
        print(f"  {what}: {kind} {rate:8.1f} req/s ({rate * BATCH:9.0f} events/s), in-process {memory:8.1f} "
              f"req/s ({memory * BATCH:9.0f} events/s): ratio {rate / memory:.2f} (target >= {target})")
        measured.append((f"{label} ingestUsage, {what}", rate, memory, True))
    return measured

async def durable(rounds: int, seconds: float, concurrency: int) -> Measured:
    """The real control plane with ``memory`` metering on each transport, each in its own state
    directory, driven ``concurrency`` requests at a time through the ASGI driver; rounds alternate. A
    round ends once the bus has delivered everything it accepted ("delivered" counts that wait)."""
    payload = body("ingestUsage")
    with tempfile.TemporaryDirectory() as tmp:
        # Durable: the SQLite transport and memory metering's write-ahead log (fsync per batch), as sbt
        # serve runs by default; the baseline: the in-process transport and metering in memory only.
        planes = {kind: control_plane(f"{tmp}/{kind}", metering="memory", transport=kind,
                                      settings={"durable": kind == "sqlite"})
                  for kind in ("inprocess", "sqlite")}
        try:
            best = await delivered_rates(planes, payload, rounds, seconds, concurrency)
        finally:
            for cp in planes.values():
                cp.close(timeout=60)
    print(f"in-process ASGI, {concurrency} concurrent requests of {BATCH} ingestUsage events, delivered to memory "
          f"metering; SQLite transport + metering write-ahead log vs in-process transport, no log")
    return report_rates(best, "sqlite", "durable", 0.7)


# --- the NATS JetStream transport against the in-process one ----------------------------------------------

NATS_URL = os.environ.get("SBT_BENCH_NATS_URL", "nats://127.0.0.1:4222")
INGEST_TARGET = "metering_ingest_usage_event"


def nats_events(tag: str) -> dict[str, Any]:
    """``[events]`` keys for a stream of the benchmark's own (deleted at the end)."""
    return {"url": NATS_URL, "stream": f"SBT_BENCH_{tag}", "subject_prefix": f"sbt_bench.{tag}"}


def drop_stream(tag: str) -> None:
    from sbt_core.runtime.bus.nats_transport import NatsTransport

    transport = NatsTransport(NATS_URL, **{k: v for k, v in nats_events(tag).items() if k != "url"})
    try:
        transport._run(transport._js._jsm.delete_stream(transport.stream), 10)
    finally:
        transport.close()


def wait_nats_idle(transport: Any, target: str = INGEST_TARGET) -> None:
    """Until JetStream holds no message of ``target`` that a process has not acked (all delivered)."""
    for _ in range(120_000):
        if transport.pending(target) == 0:
            return
        time.sleep(0.001)
    raise SystemExit("JetStream still held undelivered events after 120 s")


async def nats_one(rounds: int, seconds: float, concurrency: int) -> Measured:
    """The real control plane with ``memory`` metering (no log) on the NATS transport and on the in-process
    one, driven ``concurrency`` requests at a time through the ASGI driver; rounds alternate. A round ends
    once every accepted event is delivered (NATS: JetStream holds none un-acked; in-process: bus.join)."""
    import uuid

    payload = body("ingestUsage")
    tag = uuid.uuid4().hex[:10]
    with tempfile.TemporaryDirectory() as tmp:
        planes = {kind: control_plane(f"{tmp}/{kind}", metering="memory", transport=kind,
                                      settings={"durable": False},
                                      events=nats_events(tag) if kind == "nats" else None)
                  for kind in ("inprocess", "nats")}
        try:
            best = await delivered_rates(planes, payload, rounds, seconds, concurrency)
        finally:
            for cp in planes.values():
                cp.close(timeout=60)
            drop_stream(tag)
    print(f"in-process ASGI, {concurrency} concurrent requests of {BATCH} ingestUsage events, delivered to memory "
          f"metering (no log); NATS JetStream transport vs in-process transport, one process")
    return report_rates(best, "nats", "nats", 0.5)


async def nats_two(rounds: int, seconds: float, connections: int = 4) -> Measured:
    """``sbt serve``-like servers (uvicorn child processes, noop metering) on the NATS transport: one
    process on a stream of its own against two processes sharing another, each driven by ``connections``
    keep-alive clients in all (spread over the processes); a round ends once JetStream holds no un-acked
    event of its stream. On a 2-core machine two processes plus nats-server and the client share the
    cores, which bounds the ratio."""
    import socket
    import subprocess
    import uuid

    from sbt_core.runtime.bus.nats_transport import NatsTransport

    tags = {"one": uuid.uuid4().hex[:10], "two": uuid.uuid4().hex[:10]}
    procs: list[subprocess.Popen[str]] = []
    ports: dict[str, list[tuple[int, str]]] = {"one": [], "two": []}
    watchers: dict[str, NatsTransport] = {}
    payload = body("ingestUsage")

    def request(token: str) -> bytes:
        return (f"POST /events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\nauthorization: Bearer {token}\r\n\r\n").encode() + payload

    try:
        for setup, count in (("one", 1), ("two", 2)):
            for _ in range(count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    port = sock.getsockname()[1]
                proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve",
                                         f"sbt-nats-{tags[setup]}", "--port", str(port)], stdout=subprocess.PIPE,
                                        text=True)
                procs.append(proc)
                assert proc.stdout is not None
                ports[setup].append((port, proc.stdout.readline().strip()))
            stream = nats_events(tags[setup])
            watchers[setup] = NatsTransport(NATS_URL, stream=stream["stream"], subject_prefix=stream["subject_prefix"])

        async def run(setup: str, span: float) -> float:
            per = max(1, connections // len(ports[setup]))
            start = time.perf_counter()
            counts = await asyncio.gather(*(hammer(port, request(token), span, per) for port, token in ports[setup]))
            await asyncio.to_thread(wait_nats_idle, watchers[setup])
            return sum(c for c, _ in counts) / (time.perf_counter() - start)

        for setup in ports:
            await run(setup, 0.3)  # warm up
        best = {setup: 0.0 for setup in ports}
        for _ in range(rounds):
            for setup in ports:
                best[setup] = max(best[setup], await run(setup, seconds))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        for watcher in watchers.values():
            watcher.close()
        for tag in tags.values():
            drop_stream(tag)
    print(f"uvicorn on 127.0.0.1, {connections} keep-alive connections in all, {BATCH} ingestUsage events per "
          f"request, NATS transport: two processes vs one (delivered; {os.cpu_count()} cores shared with "
          "nats-server and the client)")
    print(f"  one process {best['one']:8.1f} req/s ({best['one'] * BATCH:9.0f} events/s), two processes "
          f"{best['two']:8.1f} req/s ({best['two'] * BATCH:9.0f} events/s): ratio {best['two'] / best['one']:.2f}")
    return [("nats ingestUsage, two processes vs one, delivered", best["two"], best["one"], False)]


# --- over uvicorn on 127.0.0.1 -------------------------------------------------------------------------------

def serve(kind: str, port: int) -> None:
    """Run one app under uvicorn on 127.0.0.1:port (a child process of the benchmark): sbt exactly as
    ``sbt serve`` runs it (``ControlPlane.serve``, which also tunes the garbage collector once started),
    bare as a plain uvicorn server."""
    import uvicorn

    with tempfile.TemporaryDirectory() as tmp:
        if kind.startswith("sbt"):
            # "sbt-nats-<tag>": on the NATS transport, stream of that tag (shared with the other processes of it)
            tag = kind[len("sbt-nats-"):] if kind.startswith("sbt-nats-") else ""
            cp = control_plane(tmp, start=False, transport="nats" if tag else "inprocess",
                               events=nats_events(tag) if tag else None)

            def ready(url: str) -> None:
                print(cp.providers.instances["auth"].mint_token(["event/event_write", "event/event_read"]), flush=True)

            asyncio.run(cp.serve("127.0.0.1", port, ready=ready, log_level="warning"))
        else:
            print("-", flush=True)
            uvicorn.Server(uvicorn.Config(bare_app(), host="127.0.0.1", port=port, log_level="warning",
                                          access_log=False, lifespan="off")).run()


async def hammer(port: int, request: bytes, seconds: float, connections: int) -> tuple[int, float]:
    """``connections`` keep-alive HTTP/1.1 clients sending ``request`` in a loop for about ``seconds``:
    (requests answered, seconds taken)."""
    end = time.perf_counter() + seconds

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        done = 0
        while time.perf_counter() < end:
            writer.write(request)
            await writer.drain()
            await read_response(reader)
            done += 1
        writer.close()
        return done

    start = time.perf_counter()
    counts = await asyncio.gather(*(one() for _ in range(connections)))
    return sum(counts), time.perf_counter() - start


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """The body of one 200 response (anything else stops the benchmark)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"answered {head.splitlines()[0]!r}")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return await reader.readexactly(length)


async def wait_delivered(port: int, token: str) -> None:
    """Poll ``GET /events?limit=1`` until the newest event has no pending delivery: the target's worker
    handles its queue in order, so then every event accepted before it has been delivered too."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"GET /events?limit=1 HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\r\n"
               ).encode()
    try:
        for _ in range(60_000):
            writer.write(request)
            data = json.loads(await read_response(reader))["data"]
            if data and all(d["state"] != "pending" for d in data[0]["deliveries"]):
                return
            await asyncio.sleep(0.002)
        raise SystemExit("the sbt server did not deliver its events within 120 s")
    finally:
        writer.close()


async def over_uvicorn(rounds: int, seconds: float, connections: int = 4) -> Measured:
    """Both apps under uvicorn in child processes, driven over loopback by a minimal raw HTTP client.

    As in-process, each sbt round ends once the server's bus has delivered everything (polled through
    ``GET /events``), before the bare round starts; "delivered" counts that wait, "answered" does not.
    """
    import socket
    import subprocess

    procs: dict[str, tuple[subprocess.Popen[str], int, str]] = {}
    try:
        for kind in ("sbt", "bare"):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", kind, "--port", str(port)],
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            procs[kind] = (proc, port, proc.stdout.readline().strip())
        for _, port, _ in procs.values():
            for _ in range(200):
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        payload = body("ingestUsage")

        def request(token: str) -> bytes:
            auth = f"authorization: Bearer {token}\r\n" if token != "-" else ""
            return (f"POST /events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(payload)}\r\n{auth}\r\n").encode() + payload

        (_, sbt_port, token), (_, bare_port, _) = procs["sbt"], procs["bare"]
        sbt_req, bare_req = request(token), request("-")
        await hammer(sbt_port, sbt_req, 0.3, connections)
        await wait_delivered(sbt_port, token)
        await hammer(bare_port, bare_req, 0.3, connections)
        best_sbt = best_delivered = best_bare = 0.0
        for _ in range(rounds):
            count, elapsed = await hammer(sbt_port, sbt_req, seconds, connections)
            start = time.perf_counter()
            await wait_delivered(sbt_port, token)
            drain = time.perf_counter() - start
            best_sbt, best_delivered = max(best_sbt, count / elapsed), max(best_delivered, count / (elapsed + drain))
            count, elapsed = await hammer(bare_port, bare_req, seconds, connections)
            best_bare = max(best_bare, count / elapsed)
        title = f"uvicorn on 127.0.0.1, {connections} keep-alive connections, {BATCH} ingestUsage events per request"
        show(f"{title}; answered:", best_sbt, best_bare)
        show(f"{title}; delivered (time until the server's bus has delivered every accepted event):",
             best_delivered, best_bare)
        return [("uvicorn ingestUsage, answered", best_sbt, best_bare, True),
                ("uvicorn ingestUsage, delivered", best_delivered, best_bare, True)]
    finally:
        for proc, _, _ in procs.values():
            proc.terminate()
            proc.wait(10)


async def main(rounds: int, seconds: float, mode: str, concurrency: int) -> None:
    measured: Measured = []
    if mode in ("all", "asgi"):
        measured += await in_process(rounds, seconds)
    if mode in ("all", "uvicorn"):
        measured += await over_uvicorn(rounds, seconds)
    kept: Measured = []
    if mode in ("all", "durable"):
        kept = await durable(rounds, seconds, concurrency)
    on_nats: Measured = []
    if mode in ("all", "nats"):
        on_nats = await nats_one(rounds, seconds, concurrency)
    scaling: Measured = []
    if mode in ("all", "nats", "nats2"):
        scaling = await nats_two(rounds, seconds)
    print(f"ratio sbt/bare: {', '.join(f'{name} {sbt / bare:.2f}' for name, sbt, bare, _ in measured)}")
    print(f"ratio sqlite/in-process transport: {', '.join(f'{name} {a / b:.2f}' for name, a, b, _ in kept)} "
          f"(target >= 0.7)")
    if on_nats:
        print(f"ratio nats/in-process transport: {', '.join(f'{name} {a / b:.2f}' for name, a, b, _ in on_nats)} "
              f"(target >= 0.5)")

    # _report.py sits next to this file, whose directory is off sys.path (see the top): load it by path.
    import importlib.util

    spec = importlib.util.spec_from_file_location("_report", os.path.join(os.path.dirname(__file__), "_report.py"))
    assert spec is not None and spec.loader is not None
    _report = importlib.util.module_from_spec(spec)
    sys.modules["_report"] = _report  # attrs resolves the Figure class's module while building it
    spec.loader.exec_module(_report)
    _report.report([_report.Figure("http", name, sbt * BATCH, "events/s", sbt / bare,
                                   "bare Starlette parsing the same JSON") for name, sbt, bare, _ in measured]
                   + [_report.Figure("http", name, sqlite * BATCH, "events/s", sqlite / memory,
                                     "in-process transport, metering without its log, same run", ">= 0.7",
                                     sqlite / memory >= 0.7)
                      for name, sqlite, memory, _ in kept]
                   + [_report.Figure("http", name, rate * BATCH, "events/s", rate / memory,
                                     "in-process transport, same run", ">= 0.5", rate / memory >= 0.5)
                      for name, rate, memory, _ in on_nats]
                   + [_report.Figure("http", name, two * BATCH, "events/s", two / one,
                                     "one process on NATS, same run (2 cores: bounded by the cores)")
                      for name, two, one, _ in scaling])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--mode", choices=("all", "asgi", "uvicorn", "durable", "nats", "nats2"), default="all")
    parser.add_argument("--concurrency", type=int, default=4, help="requests at a time in the durable comparison")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
    else:
        asyncio.run(main(args.rounds, args.seconds, args.mode, args.concurrency))

"""``POST /events`` throughput through the real app, as a ratio to a bare Starlette endpoint.

Both apps get the same 100-event PutEvents body (``ingestUsage`` entries) through the same minimal
in-process ASGI driver (no network, no HTTP client, so the ratio measures the apps and not a client):

- **sbt**: the real control plane (``ControlPlane.from_config``: local auth, a no-op metering provider,
  the in-process bus delivering every event to ``metering_ingest_usage_event`` in its worker thread),
  with a bearer token, so each request pays the body limit, JWT verification, scope check, per-entry
  parsing into envelopes and ``Bus.put_events``;
- **bare**: a Starlette route that parses the same JSON (``await request.json()``) and answers a
  small JSON object.

Prints requests/s and events/s of each and ``ratio = sbt / bare`` (target: at least 0.5), measured
interleaved in the same run (best of several rounds, so a noisy neighbour hurts both alike).

    python benchmarks/http.py [--rounds 5] [--seconds 1.0]
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
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from sbt_core import Provider, hookimpl  # noqa: E402
from sbt_core.config import load_config  # noqa: E402
from sbt_core.models import Page  # noqa: E402
from sbt_core.plugins import discover  # noqa: E402
from sbt_core.runtime.control_plane import ControlPlane  # noqa: E402

BATCH = 100
DETAIL_TYPE = "ingestUsage"
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]],
                   Awaitable[None]]


class NoopMetering(Provider):
    """The required IMetering hooks, doing nothing: the benchmark measures the HTTP side."""

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
    def metering_fetch_usage(self, meter_id, query):  # type: ignore[no-untyped-def]
        return Page()


def body() -> bytes:
    """A PutEvents body of ``BATCH`` ingestUsage entries (Detail as JSON text, as PutEvents sends it)."""
    entries = [{"Source": "sbt.application.plane", "DetailType": DETAIL_TYPE,
                "Detail": json.dumps({"tenantId": f"t-{i % 7}", "eventName": "api_call",
                                      "properties": {"value": i, "region": "eu"}})} for i in range(BATCH)]
    return json.dumps({"Entries": entries}).encode()


def bare_app() -> Starlette:
    async def events(request: Request) -> JSONResponse:
        data = await request.json()
        return JSONResponse({"FailedEntryCount": 0, "count": len(data["Entries"])})

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


async def rate(app: ASGIApp, payload: bytes, headers: list[tuple[bytes, bytes]], seconds: float) -> float:
    """Requests per second over about ``seconds``."""
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            status = await post(app, payload, headers)
            if status != 200:
                raise SystemExit(f"POST /events answered {status}")
        count += 10
    return count / elapsed


async def main(rounds: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        catalog = discover(entry_points=False, builtins=True, extra={"noop": NoopMetering})
        config = load_config(catalog, raw={"state_dir": str(Path(tmp)), "events": {"log_size": 1000},
                                           "providers": {"auth": {"type": "local"}, "metering": {"type": "noop"}}})
        cp = ControlPlane.from_config(catalog, config, tenants=False)
        cp.open()
        try:
            token = cp.providers.instances["auth"].mint_token(["event/event_write"])
            sbt_headers = [(b"authorization", f"Bearer {token}".encode())]
            payload = body()
            sbt, bare = cp.asgi_app, bare_app()
            await rate(sbt, payload, sbt_headers, 0.2)  # warm up both
            await rate(bare, payload, [], 0.2)
            best_sbt = best_bare = 0.0
            for _ in range(rounds):
                best_sbt = max(best_sbt, await rate(sbt, payload, sbt_headers, seconds))
                best_bare = max(best_bare, await rate(bare, payload, [], seconds))
            cp.bus.join(30)
        finally:
            cp.close(timeout=30)
    ratio = best_sbt / best_bare
    print(f"POST /events, {BATCH}-event batches ({len(payload)} bytes), best of {rounds} x {seconds:.1f}s:")
    print(f"  sbt : {best_sbt:8.1f} req/s  {best_sbt * BATCH:10.0f} events/s")
    print(f"  bare: {best_bare:8.1f} req/s  {best_bare * BATCH:10.0f} events/s")
    print(f"  ratio sbt/bare = {ratio:.2f} (target >= 0.5) {'OK' if ratio >= 0.5 else 'BELOW TARGET'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.seconds))

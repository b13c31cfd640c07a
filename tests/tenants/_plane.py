"""Test providers that record the lifecycle events they are bound to, and the real control plane
(``sbt_core.testing`` harness) around them with the registry on a given database."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from sbt_core import Provider, hookimpl
from sbt_core.models import Event, Meter, Page
from sbt_core.testing import Harness, start_control_plane


class _Recording(Provider):
    """Keeps every event delivered to it, per hook, thread-safely."""

    def __init__(self, settings: Any, context: Any) -> None:
        super().__init__(settings, context)
        self.lock = threading.Lock()
        self.received: dict[str, list[Event]] = {}

    def record(self, hook: str, event: Event) -> None:
        with self.lock:
            self.received.setdefault(hook, []).append(event)

    def events(self, hook: str) -> list[Event]:
        with self.lock:
            return list(self.received.get(hook, []))


class RecordingBilling(_Recording):
    """IBilling provider whose customer hooks record the onboarding/offboarding events."""

    @hookimpl
    def billing_create_customer(self, event: Event) -> None:
        self.record("billing_create_customer", event)

    @hookimpl
    def billing_delete_customer(self, event: Event) -> None:
        self.record("billing_delete_customer", event)


class RecordingMetering(_Recording):
    """IMetering provider (required hooks stubbed) whose optional customer hooks record events."""

    @hookimpl
    def metering_create_meter(self, meter: Any) -> Meter:
        raise NotImplementedError

    @hookimpl
    def metering_fetch_meter(self, meter_id: str) -> Meter:
        raise NotImplementedError

    @hookimpl
    def metering_fetch_all_meters(self, limit: int, next_token: str | None) -> Page[Meter]:
        return Page()

    @hookimpl
    def metering_ingest_usage_event(self, usage_event: Any) -> None:
        return None

    @hookimpl
    def metering_fetch_usage(self, meter_id: str, query: Any) -> Page[Any]:
        return Page()

    @hookimpl
    def metering_create_customer(self, event: Event) -> None:
        self.record("metering_create_customer", event)

    @hookimpl
    def metering_delete_customer(self, event: Event) -> None:
        self.record("metering_delete_customer", event)


PLUGINS = {"recording-billing": RecordingBilling, "recording-metering": RecordingMetering}


def plane_config(database_url: str, *, recorders: bool = True) -> dict[str, Any]:
    """The ``sbt.toml`` (as data) over the harness defaults: the recording providers and the registry
    on ``database_url``."""
    table: dict[str, Any] = {"tenants": {"database_url": database_url}}
    if recorders:
        table["providers"] = {"billing": {"type": "recording-billing"}, "metering": {"type": "recording-metering"}}
    return table


def start_plane(state_dir: Path, database_url: str, *, recorders: bool = True) -> Harness:
    """The real ControlPlane (``sbt_core.testing`` harness) around the recording providers."""
    return start_control_plane(state_dir, plugins=PLUGINS, config=plane_config(database_url, recorders=recorders))


@contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10  # a hang guard only
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    host, port = sock.getsockname()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()

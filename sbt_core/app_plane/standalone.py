"""``sbt app-plane run``: the application plane as its own process, beside a control plane it reaches over
HTTP — as sbt-aws's application plane is a deployment of its own that shares only the event bus.

What it does today, with the control plane's in-process bus:

- It runs a bus of its own (in-process, dead letters in memory) with the jobs subscribed to it, exactly
  as in ``sbt serve``, and the same job store (``[app_plane] database_url``, else
  ``<state_dir>/jobs.sqlite3`` of its own config).
- Incoming events: every ``[app_plane] poll_interval_seconds`` it reads the control plane's event log
  (``GET /events?limit=1000``, scope ``event/event_read``) and puts the events a job is triggered by, and
  it has not seen yet, on its bus (:class:`ControlPlaneFeed`). The job store keeps this idempotent across
  its restarts: an event whose run finished runs nothing again.
- Outgoing events: outcomes go to the control plane's ``POST /events`` (scope ``event/event_write``),
  where the tenant registry takes them; an outcome the control plane cannot take now is sent again by
  the housekeeper.

Several such processes may share one job store (PostgreSQL, or one SQLite file): each reads every event
and the claim gives each run to exactly one of them.

Limits of reading the event log: the log lives in the control plane's memory and keeps its newest
``[events] log_size`` events, so events that arrive faster than that between two polls, or that the
control plane held when it restarted, are never seen here. This is the seam a broker transport replaces:
with NATS JetStream (``[events] transport = "nats"``), each application-plane process attaches
:class:`~sbt_core.app_plane.AppPlane` to a bus on the shared stream instead, the broker hands each
event to one of them, and the job store on PostgreSQL settles the claim when two get the same event —
no feed, no polling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..config import Config
from ..errors import SbtError
from ..models import Event, from_json, to_json
from ..plugins import PluginCatalog
from ..runtime.bus import Bus
from ..runtime.bus.client import BusClient
from ..runtime.contracts import PutEventsEntryResult
from ..triggers import EventTrigger
from . import open_app_plane
from .plane import AppPlane

__all__ = ["ControlPlaneFeed", "HttpPublisher", "run_standalone"]

log = logging.getLogger("sbt.jobs")

#: Events read from the control plane's log per poll (its ``GET /events`` maximum).
PAGE = 1000


class HttpPublisher:
    """``put_events`` to a control plane's ``POST /events``, holding ``lock`` (the threads that publish and the
    feed share one client).

    :raises ServerError: the control plane is unreachable or refused the whole request.
    """

    def __init__(self, client: BusClient, lock: threading.Lock) -> None:
        self._client = client
        self._lock = lock

    def __call__(self, events: Sequence[Event]) -> list[PutEventsEntryResult]:
        with self._lock:
            answer = self._client.put_events([to_json(event) for event in events])
        return [PutEventsEntryResult(event_id=entry.get("EventId"), error_code=entry.get("ErrorCode"),
                                     error_message=entry.get("ErrorMessage")) for entry in answer["Entries"]]


class ControlPlaneFeed:
    """Puts the control plane's events that ``triggers`` match on ``bus``, each once per process (see the
    module docstring for how and its limits)."""

    def __init__(self, client: BusClient, bus: Bus, triggers: Sequence[EventTrigger], lock: threading.Lock) -> None:
        self._client = client
        self._lock = lock
        self._bus = bus
        self._triggers = {(t.detail_type, t.source) for t in triggers}
        self._seen: set[str] = set()

    def poll(self) -> int:
        """Read the log once, put what is new and matches (oldest first); returns how many were put.

        :raises ServerError: the control plane is unreachable or refused the token.
        """
        with self._lock:
            records = self._client.list_events(PAGE)
        page_ids = {record["event"]["id"] for record in records}
        fresh: list[Event] = []
        for record in reversed(records):  # the log is newest first
            data: dict[str, Any] = record["event"]
            if data["id"] in self._seen:
                continue
            event = from_json(Event, data)
            if (event.name, event.source) in self._triggers:
                fresh.append(event)
        if fresh:
            for event, result in zip(fresh, self._bus.put_events(fresh), strict=True):
                if result.event_id is None:
                    page_ids.discard(event.id)  # refused (the bus is stopping): offered again next poll
                    log.warning("event %s not taken: %s", event.id, result.error_message)
        # Only ids still in the log can come back: remembering those alone keeps the set bounded.
        self._seen = page_ids
        return len(fresh)


def run_standalone(config: Config, catalog: PluginCatalog, url: str, token: str | Callable[[], str],
                   stop: threading.Event, *, ready: Any = None) -> None:
    """Run the application plane of ``config`` against the control plane at ``url`` until ``stop`` is set.

    :param token: a bearer token with ``event/event_read`` and ``event/event_write``, or a function that
        mints one: called again whenever the control plane answers 401 (the token expired).
    :param ready: called once running, with the plane (the CLI prints where it runs).
    :raises ConfigError: ``[[jobs]]`` or ``[app_plane]`` is invalid.
    """
    mint = token if callable(token) else None
    client = BusClient(url, mint() if mint is not None else str(token))
    lock = threading.Lock()  # one request at a time on the shared client
    bus = Bus(config.events)
    plane: AppPlane = open_app_plane(config, catalog, publish=HttpPublisher(client, lock))
    plane.attach(bus)
    feed = ControlPlaneFeed(client, bus, [job.trigger for job in plane.jobs.values()], lock)
    unreachable = False
    try:
        plane.start()
        bus.start()
        if ready is not None:
            ready(plane)
        while True:
            try:
                feed.poll()
                if unreachable:
                    log.info("the control plane at %s answers again", url)
                unreachable = False
            except SbtError as exc:
                if mint is not None and getattr(exc, "status", None) == 401:
                    with lock:
                        client.set_token(mint())
                    log.info("the control plane refused the token; minted a new one")
                if not unreachable:
                    log.warning("cannot read the control plane's events: %s", exc.message)
                unreachable = True
            if stop.wait(plane.settings.poll_interval_seconds):
                break
    finally:
        bus.stop()
        plane.close()
        client.close()

"""An HTTP client of the running control plane's bus and scheduler routes (``sbt events``, ``sbt schedule``).

The event log, the dead-letter store and the providers' state live in the ``sbt serve`` process (the
in-process transport keeps them in memory), so the CLI reads and changes them through the server:

=====================================  ====================  ==========================================
call                                   route                 scope
=====================================  ====================  ==========================================
:meth:`BusClient.put_events`           ``POST /events``      ``event/event_write``
:meth:`BusClient.list_events`          ``GET /events``       ``event/event_read``
:meth:`BusClient.get_event`            ``GET /events/{id}``  ``event/event_read``
:meth:`BusClient.dead_letters`         ``GET /dead-letters`` ``event/event_read``
:meth:`BusClient.replay`               ``POST /dead-letters/replay``  ``event/event_write``
:meth:`BusClient.schedules`            ``GET /schedules``    ``event/event_read``
:meth:`BusClient.run_schedule`         ``POST /schedules/{hook}/run``  ``event/event_write``
=====================================  ====================  ==========================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..http.client import ControlPlaneClient, ServerError

__all__ = ["BusClient", "ServerError"]


class BusClient(ControlPlaneClient):
    """Bus and scheduler routes over HTTP (a :class:`ControlPlaneClient`; a token with the ``event/*``
    scopes the calls need). Every method raises :class:`ServerError` with the server's message."""

    def put_events(self, entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``POST /events`` with a list of envelopes (or PutEvents entries) ->
        ``{"FailedEntryCount": n, "Entries": [{"EventId"} | {"ErrorCode", "ErrorMessage"}]}``."""
        return dict(self._call("POST", "/events", json=list(entries)))

    def list_events(self, limit: int = 50) -> list[dict[str, Any]]:
        """Recent event-log entries, newest first: ``[{event, received, deliveries: [...]}]``."""
        return list(self._call("GET", "/events", params={"limit": limit})["data"])

    def event_page(self, limit: int = 50) -> tuple[list[dict[str, Any]], int | None]:
        """The :meth:`list_events` records and how many events the server's log holds (None from a server
        that does not say)."""
        body = self._call("GET", "/events", params={"limit": limit})
        total = body.get("total")
        return list(body["data"]), total if isinstance(total, int) else None

    def get_event(self, event_id: str) -> dict[str, Any]:
        """One event-log entry (404 -> ServerError)."""
        return dict(self._call("GET", f"/events/{event_id}")["data"])

    def dead_letters(self, *, event_id: str | None = None, target: str | None = None) -> list[dict[str, Any]]:
        """The dead-letter store: ``[{event, target, attempts, lastError, deadLettered}]``."""
        params = {k: v for k, v in (("eventId", event_id), ("target", target)) if v}
        return list(self._call("GET", "/dead-letters", params=params)["data"])

    def replay(self, *, event_id: str | None = None, target: str | None = None) -> list[dict[str, Any]]:
        """Replay dead letters (no filter: all); returns those replayed."""
        body = {k: v for k, v in (("eventId", event_id), ("target", target)) if v}
        return list(self._call("POST", "/dead-letters/replay", json=body)["data"])

    def schedules(self) -> list[dict[str, Any]]:
        """``[{hook, expression, nextDue, fired, skipped}]``."""
        return list(self._call("GET", "/schedules")["data"])

    def run_schedule(self, hook: str) -> dict[str, Any]:
        """Fire a manual run of ``hook`` now -> ``{hook, eventId}``."""
        return dict(self._call("POST", f"/schedules/{hook}/run")["data"])

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

import httpx

from ...errors import SbtError

__all__ = ["BusClient", "ServerError"]


class ServerError(SbtError):
    """The server answered an error (``status`` = its HTTP status, message = its ``message``), or could
    not be reached (status 502, the message says to start ``sbt serve``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BusClient:
    """Bus and scheduler routes over HTTP.

    :param base_url: the control plane, e.g. ``http://127.0.0.1:8080``.
    :param token: a bearer token with the ``event/*`` scopes the calls need.
    :param transport: an httpx transport (default: real HTTP).
    :raises ServerError: from every method, with the server's message.
    """

    def __init__(self, base_url: str, token: str | None = None, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = 30.0) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, transport=transport, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BusClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise ServerError(f"cannot reach the control plane at {self.base_url} ({type(exc).__name__}); "
                              "is 'sbt serve' running? (--url / SBT_URL)", 502) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else None
            raise ServerError(f"{message or response.reason_phrase} (HTTP {response.status_code})", response.status_code)
        return body

    def put_events(self, entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``POST /events`` with a list of envelopes (or PutEvents entries) ->
        ``{"FailedEntryCount": n, "Entries": [{"EventId"} | {"ErrorCode", "ErrorMessage"}]}``."""
        return dict(self._call("POST", "/events", json=list(entries)))

    def list_events(self, limit: int = 50) -> list[dict[str, Any]]:
        """Recent event-log entries, newest first: ``[{event, received, deliveries: [...]}]``."""
        return list(self._call("GET", "/events", params={"limit": limit})["data"])

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

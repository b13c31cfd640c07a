"""The base of sbt's HTTP clients of a running control plane (``sbt events``, ``sbt schedule``,
``sbt tenants``; handy in scripts and tests too).

The event log, dead letters and providers' state live in the ``sbt serve`` process, and an event a
command causes must reach the *server's* bus, so the CLI talks to the server instead of opening state
itself; every call then passes the same authorizer and validation as any SBT client's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import httpx

from ...errors import SbtError

__all__ = ["ControlPlaneClient", "ServerError"]


class ServerError(SbtError):
    """The server answered an error (``status`` = its HTTP status, message = its ``message``), or could
    not be reached (status 502; the message says to start ``sbt serve``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ControlPlaneClient:
    """JSON over HTTP to a control plane, bearer token attached, errors as :class:`ServerError`.

    :param base_url: the control plane, e.g. ``http://127.0.0.1:8080``.
    :param token: a bearer token with the scopes the calls need.
    :param transport: an httpx transport (tests pass ``httpx.ASGITransport(app)``; default: real HTTP).
    :param unauthorized_hint: added to the message of a 401 answer (the CLI says where it minted the token).
    """

    def __init__(self, base_url: str, token: str | None = None, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = 30.0, unauthorized_hint: str | None = None) -> None:
        self._unauthorized_hint = unauthorized_hint
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, transport=transport, timeout=timeout)

    def set_token(self, token: str) -> None:
        """Send ``token`` from now on (a long-running client replacing one that expired)."""
        self._http.headers["authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              headers: Mapping[str, str] | None = None) -> Any:
        """The decoded JSON answer (None when the body is not JSON).

        :raises ServerError: an error status, with the server's ``message``; or the server is unreachable.
        """
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise ServerError(f"cannot reach the control plane at {self.base_url} ({type(exc).__name__}); "
                              "is 'sbt serve' running? (--url / SBT_URL)", 502) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else None
            status = response.status_code
            hint = f"; {self._unauthorized_hint}" if status == 401 and self._unauthorized_hint else ""
            raise ServerError(f"{message or response.reason_phrase} (HTTP {status}){hint}", status)
        return body

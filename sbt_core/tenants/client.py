"""A small HTTP client of the registry's routes, used by ``sbt tenants`` (and handy in scripts and tests).

The CLI goes through the running server rather than opening the database itself, for two reasons: the
``onboardingRequest``/``offboardingRequest`` it causes must reach the *server's* bus (a CLI process has
no providers bound), and every change then passes the same authorizer, validation and service code as
an sbt-aws client's. ``sbt events put`` reaches the server the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from ..errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError, SbtError, UnauthorizedError

__all__ = ["TenantClient", "TenantClientError"]

_ERRORS: dict[int, type[SbtError]] = {400: BadRequestError, 401: UnauthorizedError, 403: ForbiddenError,
                                      404: NotFoundError, 409: ConflictError}


class TenantClientError(SbtError):
    """The server answered an error (``status`` is its HTTP status) or could not be reached (status 502)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TenantClient:
    """``/tenant-registrations`` and ``/tenants`` over HTTP.

    :param base_url: the control plane, e.g. ``http://127.0.0.1:8080``.
    :param token: a bearer token with ``tenant/tenant_read`` / ``tenant/tenant_write``.
    :param transport: an httpx transport (tests pass ``httpx.ASGITransport(app)``).

    Every method returns the ``data`` of the answer (lists: ``(items, next_token)``) and raises
    :class:`TenantClientError` with the server's ``message`` on an error status.
    """

    def __init__(self, base_url: str, token: str | None = None, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = 30.0) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, transport=transport, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TenantClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise TenantClientError(f"cannot reach the control plane at {self.base_url} ({exc.__class__.__name__}); "
                                    "is 'sbt serve' running?", 502) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else None
            raise TenantClientError(f"{message or response.reason_phrase} (HTTP {response.status_code})",
                                    response.status_code)
        return body if isinstance(body, dict) else {"data": body}

    # --- registrations -----------------------------------------------------------------------------------

    def register(self, tenant_data: Mapping[str, Any], tenant_registration_data: Mapping[str, Any] | None = None,
                 *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /tenant-registrations`` -> ``{tenantRegistrationId, tenantId, message}``."""
        body: dict[str, Any] = {"tenantData": dict(tenant_data)}
        if tenant_registration_data:
            body["tenantRegistrationData"] = dict(tenant_registration_data)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call("POST", "/tenant-registrations", json=body, headers=headers)["data"]

    def list_registrations(self, limit: int | None = None,
                           next_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``GET /tenant-registrations``."""
        return self._page("/tenant-registrations", limit, next_token)

    def iter_registrations(self, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every registration, following ``next_token``."""
        yield from self._iter("/tenant-registrations", limit)

    def get_registration(self, registration_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tenant-registrations/{registration_id}")["data"]

    def update_registration(self, registration_id: str, *, tenant_data: Mapping[str, Any] | None = None,
                            tenant_registration_data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``PATCH`` -> ``{tenantRegistration, tenant, message}``."""
        body: dict[str, Any] = {}
        if tenant_data:
            body["tenantData"] = dict(tenant_data)
        if tenant_registration_data:
            body["tenantRegistrationData"] = dict(tenant_registration_data)
        return self._call("PATCH", f"/tenant-registrations/{registration_id}", json=body)["data"]

    def delete_registration(self, registration_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/tenant-registrations/{registration_id}")["data"]

    # --- tenants -------------------------------------------------------------------------------------------

    def list_tenants(self, limit: int | None = None,
                     next_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        return self._page("/tenants", limit, next_token)

    def iter_tenants(self, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every tenant, following ``next_token``."""
        yield from self._iter("/tenants", limit)

    def get_tenant(self, tenant_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tenants/{tenant_id}")["data"]

    # --- paging --------------------------------------------------------------------------------------------

    def _page(self, path: str, limit: int | None, next_token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if next_token:
            params["next_token"] = next_token
        body = self._call("GET", path, params=params)
        return list(body.get("data") or []), body.get("next_token")

    def _iter(self, path: str, limit: int) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            items, token = self._page(path, limit, token)
            yield from items
            if not token:
                return

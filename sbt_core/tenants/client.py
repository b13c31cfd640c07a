"""A small HTTP client of the registry's routes, used by ``sbt tenants`` (and handy in scripts and tests).

The CLI goes through the running server rather than opening the database itself, for two reasons: the
``onboardingRequest``/``offboardingRequest`` it causes must reach the *server's* bus (a CLI process has
no providers bound), and every change then passes the same authorizer, validation and service code as
an sbt-aws client's. ``sbt events put`` reaches the server the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

from ..runtime.http.client import ControlPlaneClient, ServerError

__all__ = ["ServerError", "TenantClient"]


class TenantClient(ControlPlaneClient):
    """``/tenant-registrations`` and ``/tenants`` over HTTP (a :class:`ControlPlaneClient`; a token with
    ``tenant/tenant_read`` / ``tenant/tenant_write``).

    Every method returns the ``data`` of the answer (lists: ``(items, next_token)``) and raises
    :class:`ServerError` with the server's ``message`` on an error status.
    """

    def _call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        body = super()._call(method, path, json=json, params=params, headers=headers)
        return body if isinstance(body, dict) else {"data": body}

    def _data(self, method: str, path: str, *, json: Any = None,
              headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        # Every registry route but the lists answers {"data": {...}} (routes.py), so the data is an object.
        return cast(dict[str, Any], self._call(method, path, json=json, headers=headers)["data"])

    # --- registrations -----------------------------------------------------------------------------------

    def register(self, tenant_data: Mapping[str, Any], tenant_registration_data: Mapping[str, Any] | None = None,
                 *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /tenant-registrations`` -> ``{tenantRegistrationId, tenantId, message}``."""
        body: dict[str, Any] = {"tenantData": dict(tenant_data)}
        if tenant_registration_data:
            body["tenantRegistrationData"] = dict(tenant_registration_data)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._data("POST", "/tenant-registrations", json=body, headers=headers)

    def list_registrations(self, limit: int | None = None,
                           next_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``GET /tenant-registrations``."""
        return self._page("/tenant-registrations", limit, next_token)

    def iter_registrations(self, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every registration, following ``next_token``."""
        yield from self._iter("/tenant-registrations", limit)

    def get_registration(self, registration_id: str) -> dict[str, Any]:
        return self._data("GET", f"/tenant-registrations/{registration_id}")

    def update_registration(self, registration_id: str, *, tenant_data: Mapping[str, Any] | None = None,
                            tenant_registration_data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``PATCH`` -> ``{tenantRegistration, tenant, message}``."""
        body: dict[str, Any] = {}
        if tenant_data:
            body["tenantData"] = dict(tenant_data)
        if tenant_registration_data:
            body["tenantRegistrationData"] = dict(tenant_registration_data)
        return self._data("PATCH", f"/tenant-registrations/{registration_id}", json=body)

    def delete_registration(self, registration_id: str) -> dict[str, Any]:
        return self._data("DELETE", f"/tenant-registrations/{registration_id}")

    # --- tenants -------------------------------------------------------------------------------------------

    def list_tenants(self, limit: int | None = None,
                     next_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        return self._page("/tenants", limit, next_token)

    def iter_tenants(self, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every tenant, following ``next_token``."""
        yield from self._iter("/tenants", limit)

    def get_tenant(self, tenant_id: str) -> dict[str, Any]:
        return self._data("GET", f"/tenants/{tenant_id}")

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

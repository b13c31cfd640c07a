"""The tenant registry's one code path: the HTTP routes, the CLI (through the routes) and the bus
subscribers all call :class:`TenantService`.

Behaviour mirrors sbt-aws's tenant-registration and tenant-management Lambdas (sbt-aws
``resources/functions/tenant-registrations/index.py``, ``resources/functions/tenant-management/``), with
these deliberate differences, each a fix:

- A registration and its tenant are written in one transaction (upstream: two HTTP calls; a failure
  between them left a registration without a tenant).
- Events are written to an outbox in the same transaction and published after commit: a change is
  never visible without its event, nor an event sent for a change that rolled back. An event the bus
  refuses stays in the outbox and goes out with the next change or at the next start.
- ``POST`` with an ``Idempotency-Key`` returns the first answer on a retry and does nothing new.
- ``registrationStatus`` becomes ``failed`` on provision/deprovision failure events.
- Deleting a registration that is already deleted answers as the first delete did but emits no second
  ``offboardingRequest``, so a retried DELETE does not offboard twice.
- Client data may not overwrite ``tenantId``, ``tenantRegistrationId`` or ``sbtaws_active``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import attrs
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from .. import input_policy
from ..errors import BadRequestError, ConflictError, NotFoundError, StartupError
from ..models import MAX_PAGE_LIMIT, Event, Page, PageRequest, to_json
from ..runtime.contracts import Publisher
from ._events import offboarding_event, onboarding_event, parse_job_result
from ._records import (
    REGISTRATION_ID_KEY,
    RESERVED_KEYS,
    TENANT_ID_KEY,
    Registered,
    RegistrationCreate,
    RegistrationStatus,
    RegistrationUpdate,
    Tenant,
    TenantRegistration,
    check_reserved,
)
from ._store import ID_LENGTH, IdempotencyRecord, TenantStore

__all__ = ["MAX_IDEMPOTENCY_KEY_LENGTH", "Publisher", "TenantService"]

log = logging.getLogger("sbt.tenants")


MAX_IDEMPOTENCY_KEY_LENGTH = 255


def registration_not_found(registration_id: str) -> NotFoundError:
    """sbt-aws's exact 404 text (``scripts/test-sbt-aws.sh`` and clients match on it)."""
    return NotFoundError(f"Tenant registration not found for id {registration_id}")


def tenant_not_found(tenant_id: str) -> NotFoundError:
    """sbt-aws's ``GET /tenants/{tenantId}`` 404 text."""
    return NotFoundError(f"Tenant not found for id {tenant_id}")


def _fingerprint(request: Any) -> str:
    """A stable hash of a request body (keys sorted), to tell a true retry from a reused key."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_key(key: str) -> str:
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        raise BadRequestError(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters")
    return key


class TenantService:
    """Registrations and tenants over a :class:`TenantStore`, publishing through ``publish``.

    :param store: the database.
    :param publish: ``EventBus.put_events``; may be attached later (:meth:`attach`). Until then events wait
        in the outbox and are published by the next :meth:`flush_outbox`.
    :param naming: detail-type naming of emitted events (``[events] naming``: ``sbt`` or ``sbt_aws``).
    :param idempotency_ttl: how long a first answer is kept for ``Idempotency-Key`` retries (Stripe: 24 h).
    :param outbox_lease: how long a process may hold an event it is publishing before another may take it.
    """

    def __init__(self, store: TenantStore, publish: Publisher | None = None, *, naming: str = "sbt",
                 idempotency_ttl: timedelta = timedelta(hours=24),
                 outbox_lease: timedelta = timedelta(seconds=60)) -> None:
        self.store = store
        self.naming = naming
        self.idempotency_ttl = idempotency_ttl
        self.outbox_lease = outbox_lease
        self._publish = publish
        self._flush_lock = threading.Lock()
        #: Set when the bus refused an event: the next publish sweeps the whole outbox, not just its own.
        self._backlog = False

    # --- lifecycle -------------------------------------------------------------------------------------

    def attach(self, publish: Publisher) -> None:
        """Route emitted events to ``publish`` (the runtime attaches its bus)."""
        self._publish = publish

    def start(self) -> None:
        """Create missing tables, forget expired idempotency answers, publish what a crash left behind.

        :raises StartupError: the database cannot be reached (named without its password).
        """
        try:
            self.store.create_schema()
        except OperationalError as exc:
            reason = str(exc.orig or exc).strip().splitlines()[0]
            raise StartupError(f"tenant registry: cannot open {self.store.describe()}: {reason}") from None
        with self.store.transaction() as conn:
            pruned = self.store.prune_idempotency(conn, self.idempotency_ttl)
            # Published events are kept as long as idempotency answers, for diagnosis, then dropped.
            pruned += self.store.prune_outbox(conn, self.idempotency_ttl)
        if pruned:
            log.debug("forgot %d expired idempotency answers and published events", pruned)
        self.check_stored()
        self.flush_outbox()

    def check_stored(self) -> list[str]:
        """The start-up check: ids of registrations and tenants holding values an answer cannot carry
        (stored before the input policy refused them), each logged by
        :func:`~sbt_core.input_policy.report_unanswerable`."""
        found: list[str] = []
        for what, lister, key in (("tenant registrations", self.list_registrations, "tenant_registration_id"),
                                  ("tenants", self.list_tenants, "tenant_id")):
            rows: list[tuple[str, Any]] = []
            page = PageRequest(limit=MAX_PAGE_LIMIT)
            while True:
                result: Page[Any] = lister(page)
                rows += [(getattr(row, key), row.data) for row in result.items]
                if result.next_token is None:
                    break
                page = PageRequest(limit=MAX_PAGE_LIMIT, next_token=result.next_token)
            found += input_policy.report_unanswerable(what, rows)
        return found

    def close(self) -> None:
        """Release the database connections."""
        self.store.dispose()

    # --- registrations -----------------------------------------------------------------------------------

    def register(self, request: RegistrationCreate, *, idempotency_key: str | None = None,
                 principal: str = "") -> Registered:
        """``POST /tenant-registrations``: create a registration and its tenant, emit ``onboardingRequest``.

        Rows: registration ``{tenantRegistrationId, tenantId, sbtaws_active: true, ...tenantRegistrationData}``,
        tenant ``{tenantId, tenantRegistrationId, sbtaws_active: true, ...tenantData}``; ids are uuid4.
        With ``idempotency_key`` (scoped to ``principal``), a retry with the same body returns the first
        answer with ``replayed=True`` and changes and emits nothing.

        :raises ConflictError: the key was used with a different body.
        :raises BadRequestError: a malformed key.
        """
        registration_id, tenant_id = str(uuid.uuid4()), str(uuid.uuid4())
        reg = TenantRegistration(registration_id, tenant_id, True, dict(request.tenant_registration_data))
        tenant = Tenant(tenant_id, registration_id, True, dict(request.tenant_data))
        event = onboarding_event(reg, tenant, self.naming)
        answer = Registered(registration_id, tenant_id)

        def write(conn: Connection) -> None:
            self.store.insert_registration(conn, reg)
            self.store.insert_tenant(conn, tenant)
            self.store.add_outbox(conn, [event])

        stored = self._once("register", idempotency_key, principal, to_json(request), 201, answer.to_json(), write)
        if stored is not None:
            return Registered(stored[REGISTRATION_ID_KEY], stored[TENANT_ID_KEY], stored["message"], replayed=True)
        self._publish_ids([event.id])
        return answer

    def list_registrations(self, page: PageRequest = PageRequest()) -> Page[TenantRegistration]:
        """``GET /tenant-registrations``: ``page.limit`` registrations (soft-deleted ones included, as the
        upstream scan returns them) after ``page.next_token``, in id order; ``next_token`` is the last id
        of the page when more follow, else None."""
        with self.store.read() as conn:
            rows = self.store.list_registrations(conn, page.limit + 1, page.next_token)
        more = len(rows) > page.limit
        rows = rows[:page.limit]
        return Page(items=rows, next_token=rows[-1].tenant_registration_id if more else None)

    def get_registration(self, registration_id: str) -> TenantRegistration:
        """``GET /tenant-registrations/{id}``. :raises NotFoundError: ``Tenant registration not found for id <id>``."""
        with self.store.read() as conn:
            reg = self.store.get_registration(conn, registration_id)
        if reg is None:
            raise registration_not_found(registration_id)
        return reg

    def update_registration(self, registration_id: str,
                            update: RegistrationUpdate) -> tuple[TenantRegistration, Tenant | None]:
        """``PATCH /tenant-registrations/{id}``: merge ``tenantRegistrationData`` into the registration and
        ``tenantData`` into its tenant (keys given replace stored ones); both rows are returned.

        :raises NotFoundError: unknown registration (sbt-aws's text), or its tenant is gone.
        """
        with self.store.transaction() as conn:
            reg = self.store.get_registration(conn, registration_id, for_update=True)
            if reg is None:
                raise registration_not_found(registration_id)
            if update.tenant_registration_data:
                reg = attrs.evolve(reg, data=reg.data | update.tenant_registration_data)
                self.store.save_registration(conn, reg)
            tenant = self.store.get_tenant(conn, reg.tenant_id, for_update=True) if reg.tenant_id else None
            if update.tenant_data:
                if tenant is None:
                    raise NotFoundError(f"Tenant not found for registration {registration_id}")
                tenant = attrs.evolve(tenant, data=tenant.data | update.tenant_data)
                self.store.save_tenant(conn, tenant)
        return reg, tenant

    def delete_registration(self, registration_id: str) -> TenantRegistration:
        """``DELETE /tenant-registrations/{id}``: soft-delete the registration and its tenant
        (``sbtaws_active: false``) and emit ``offboardingRequest`` (tenant item ``|`` registration item).
        Already deleted: nothing changes and nothing is emitted.

        :raises NotFoundError: ``Tenant registration not found for id <id>``.
        """
        with self.store.transaction() as conn:
            reg = self.store.get_registration(conn, registration_id, for_update=True)
            if reg is None:
                raise registration_not_found(registration_id)
            if not reg.active:
                return reg
            reg = attrs.evolve(reg, active=False)
            self.store.save_registration(conn, reg)
            tenant = self.store.get_tenant(conn, reg.tenant_id, for_update=True) if reg.tenant_id else None
            if tenant is not None:
                tenant = attrs.evolve(tenant, active=False)
                self.store.save_tenant(conn, tenant)
            event = offboarding_event(reg, tenant, self.naming)
            self.store.add_outbox(conn, [event])
        self._publish_ids([event.id])
        return reg

    def apply_job_result(self, event: Event) -> TenantRegistration | None:
        """Bus subscriber of ``provisionSuccess``/``deprovisionSuccess`` (status ``created``/``deleted``) and
        ``provisionFailure``/``deprovisionFailure`` (``failed``): merge ``jobOutput.tenantRegistrationData``
        and ``jobOutput.tenantData`` into the rows and set ``registrationStatus``.

        A provision result arriving after the registration was deprovisioned (a late retry) is ignored, so
        ``deleted`` is final. Returns the updated registration, or None when ignored.

        :raises BadRequestError: malformed detail. :raises NotFoundError: unknown registration.
        Both are final: the bus dead-letters the event instead of retrying it.
        """
        result = parse_job_result(event)
        with self.store.transaction() as conn:
            reg = self.store.get_registration(conn, result.tenant_registration_id, for_update=True)
            if reg is None:
                raise registration_not_found(result.tenant_registration_id)
            if result.is_provision and reg.status == RegistrationStatus.DELETED:
                log.info("ignored %s for deprovisioned registration %s", event.name, reg.tenant_registration_id)
                return None
            data = reg.data | _without_reserved(result.tenant_registration_data, event)
            reg = attrs.evolve(reg, data=data | {"registrationStatus": result.status})
            self.store.save_registration(conn, reg)
            tenant_data = _without_reserved(result.tenant_data, event)
            if tenant_data and reg.tenant_id:
                tenant = self.store.get_tenant(conn, reg.tenant_id, for_update=True)
                if tenant is not None:
                    self.store.save_tenant(conn, attrs.evolve(tenant, data=tenant.data | tenant_data))
        return reg

    # --- tenants (machine clients) ---------------------------------------------------------------------

    def create_tenant(self, data: Mapping[str, Any], *, idempotency_key: str | None = None,
                      principal: str = "") -> Tenant:
        """``POST /tenants``: a tenant row ``{tenantId (uuid4), sbtaws_active: true, ...data}``; ``data`` may
        link it with ``tenantRegistrationId``. Emits nothing: ``onboardingRequest`` comes from registrations
        (as in sbt-aws, where the registration Lambda emits it after calling this route).

        :raises BadRequestError: ``data`` sets ``tenantId``/``sbtaws_active``, or a non-string registration id.
        :raises ConflictError: ``idempotency_key`` reused with a different body.
        """
        check_reserved(data, "body", allowed={REGISTRATION_ID_KEY: ...})
        registration_id = data.get(REGISTRATION_ID_KEY)
        if registration_id is not None and (not isinstance(registration_id, str)
                                            or not 0 < len(registration_id) <= ID_LENGTH):
            raise BadRequestError(f"body.tenantRegistrationId: expected a string of 1 to {ID_LENGTH} characters")
        body = {k: v for k, v in data.items() if k != REGISTRATION_ID_KEY}
        tenant = Tenant(str(uuid.uuid4()), registration_id, True, body)

        def write(conn: Connection) -> None:
            self.store.insert_tenant(conn, tenant)

        stored = self._once("create_tenant", idempotency_key, principal, dict(data), 201, tenant.to_json(), write)
        if stored is not None:
            return Tenant(stored[TENANT_ID_KEY], stored.get(REGISTRATION_ID_KEY), stored["sbtaws_active"],
                          {k: v for k, v in stored.items() if k not in RESERVED_KEYS})
        return tenant

    def list_tenants(self, page: PageRequest = PageRequest()) -> Page[Tenant]:
        """``GET /tenants``: as :meth:`list_registrations`, over tenants."""
        with self.store.read() as conn:
            rows = self.store.list_tenants(conn, page.limit + 1, page.next_token)
        more = len(rows) > page.limit
        rows = rows[:page.limit]
        return Page(items=rows, next_token=rows[-1].tenant_id if more else None)

    def get_tenant(self, tenant_id: str) -> Tenant:
        """``GET /tenants/{tenantId}``. :raises NotFoundError: ``Tenant not found for id <id>``."""
        with self.store.read() as conn:
            tenant = self.store.get_tenant(conn, tenant_id)
        if tenant is None:
            raise tenant_not_found(tenant_id)
        return tenant

    def find_tenant(self, *, tenant_id: str | None = None, tenant_name: str | None = None) -> Tenant:
        """The active tenant with this id, else with this ``tenantName`` (the tenant-config route's lookups).

        :raises NotFoundError: ``No tenant details found for <id or name>`` (sbt-aws's words), also for a
            soft-deleted tenant.
        """
        with self.store.read() as conn:
            if tenant_id is not None:
                tenant = self.store.get_tenant(conn, tenant_id)
                tenant = tenant if tenant is not None and tenant.active else None
            else:
                tenant = self.store.find_active_tenant(conn, "tenantName", tenant_name or "")
        if tenant is None:
            raise NotFoundError(f"No tenant details found for {tenant_id if tenant_id is not None else tenant_name}")
        return tenant

    def update_tenant(self, tenant_id: str, data: Mapping[str, Any]) -> Tenant:
        """``PUT /tenants/{tenantId}``: merge ``data`` into the tenant (upstream drops a ``tenantId`` key; here
        one equal to the path is ignored and any other reserved key refused).

        :raises NotFoundError: unknown tenant. :raises BadRequestError: reserved keys.
        """
        check_reserved(data, "body", allowed={TENANT_ID_KEY: tenant_id})
        changes = {k: v for k, v in data.items() if k != TENANT_ID_KEY}
        with self.store.transaction() as conn:
            tenant = self.store.get_tenant(conn, tenant_id, for_update=True)
            if tenant is None:
                raise tenant_not_found(tenant_id)
            if changes:
                tenant = attrs.evolve(tenant, data=tenant.data | changes)
                self.store.save_tenant(conn, tenant)
        return tenant

    def delete_tenant(self, tenant_id: str) -> Tenant:
        """``DELETE /tenants/{tenantId}``: soft delete (``sbtaws_active: false``); emits nothing (the
        registration's delete emits ``offboardingRequest``). :raises NotFoundError: unknown tenant."""
        with self.store.transaction() as conn:
            tenant = self.store.get_tenant(conn, tenant_id, for_update=True)
            if tenant is None:
                raise tenant_not_found(tenant_id)
            if tenant.active:
                tenant = attrs.evolve(tenant, active=False)
                self.store.save_tenant(conn, tenant)
        return tenant

    # --- idempotency and the outbox ----------------------------------------------------------------------

    def _once(self, operation: str, key: str | None, principal: str, request: Any, status: int,
              response: dict[str, Any], write: Callable[[Connection], None]) -> dict[str, Any] | None:
        """Run ``write`` in a transaction; with ``key``, claim the key in the same transaction. Returns the
        stored first answer when the key was claimed before (then ``write`` did not run), else None."""
        if key is None:
            with self.store.transaction() as conn:
                write(conn)
            return None
        key = _check_key(key)
        fingerprint = _fingerprint(request)
        try:
            with self.store.transaction() as conn:
                self.store.prune_idempotency(conn, self.idempotency_ttl)
                self.store.insert_idempotency(conn, principal, operation, key,
                                              IdempotencyRecord(fingerprint, status, response))
                write(conn)
            return None
        except IntegrityError:
            with self.store.transaction() as conn:
                stored = self.store.get_idempotency(conn, principal, operation, key)
            if stored is None:
                raise
        if stored.fingerprint != fingerprint:
            raise ConflictError(f"Idempotency-Key {key!r} was already used with a different request body")
        # The first request may have crashed between commit and publish: publish what it left.
        self.flush_outbox()
        return stored.response

    def flush_outbox(self) -> int:
        """Publish every event still waiting in the outbox; returns how many were published."""
        if self._publish is None:
            return 0
        with self.store.transaction() as conn:
            pending = self.store.pending_outbox(conn)
        return self._publish_ids(pending)

    def _publish_ids(self, event_ids: Sequence[str]) -> int:
        """Claim, publish and mark each event; one a bus refuses stays pending for the next flush."""
        if self._publish is None or not event_ids:
            return 0
        if self._backlog:
            self._backlog = False
            with self.store.transaction() as conn:
                event_ids = list(dict.fromkeys([*self.store.pending_outbox(conn), *event_ids]))
        published = 0
        with self._flush_lock:
            for event_id in event_ids:
                with self.store.transaction() as conn:
                    event = self.store.claim_outbox(conn, event_id, self.outbox_lease)
                if event is None:
                    continue  # published already, or another process holds it
                ok = False
                try:
                    results = self._publish([event])
                    ok = bool(results) and results[0].event_id is not None
                    if not ok:
                        log.warning("event bus refused %s %s: %s", event.detail_type, event.id,
                                    results[0].error_message if results else "no result")
                except Exception:
                    log.exception("publishing %s %s failed; it stays in the outbox", event.detail_type, event.id)
                with self.store.transaction() as conn:
                    self.store.finish_outbox(conn, event_id, published=ok)
                published += ok
                self._backlog = self._backlog or not ok
        return published


def _without_reserved(data: Mapping[str, Any], event: Event) -> dict[str, Any]:
    dropped = RESERVED_KEYS & data.keys()
    if dropped:
        log.warning("%s %s: ignored control-plane keys %s in jobOutput", event.name, event.id, sorted(dropped))
    return {k: v for k, v in data.items() if k not in RESERVED_KEYS}

"""The storage seam of the tenant registry: SQLAlchemy 2 Core over SQLite (embedded) or PostgreSQL.

Four tables, all prefixed ``sbt_`` so the registry can share a database with other components:

- ``sbt_tenant_registrations`` / ``sbt_tenants``: ids, the active flag and the client's keys as JSON.
- ``sbt_tenant_idempotency``: the first answer to each ``Idempotency-Key`` (per caller and operation),
  written in the same transaction as the rows it created, so two ``sbt serve`` processes agree.
- ``sbt_tenant_outbox``: events written in the same transaction as the change that caused them and
  published after commit (a crash between commit and publish loses nothing; a lease stops two
  processes from publishing the same event).

Every method takes the :class:`~sqlalchemy.engine.Connection` of a transaction opened with
:meth:`TenantStore.transaction`, so the service decides what is atomic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DataError

from .._sql import create_engine, read_only
from ..errors import BadRequestError
from ..models import Event, from_json, to_json, utcnow
from ._records import Tenant, TenantRegistration

__all__ = ["IdempotencyRecord", "TenantStore"]

log = logging.getLogger("sbt.tenants")

metadata = sa.MetaData()

#: Ids are uuid4 text (36 characters); clients may link a tenant to a registration id of up to this length.
ID_LENGTH = 64
_ID = sa.String(ID_LENGTH)

registrations = sa.Table(
    "sbt_tenant_registrations", metadata,
    sa.Column("registration_id", _ID, primary_key=True),
    sa.Column("tenant_id", _ID, nullable=True, index=True),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

tenants = sa.Table(
    "sbt_tenants", metadata,
    sa.Column("tenant_id", _ID, primary_key=True),
    sa.Column("registration_id", _ID, nullable=True, index=True),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

idempotency = sa.Table(
    "sbt_tenant_idempotency", metadata,
    sa.Column("principal", sa.String(255), primary_key=True),
    sa.Column("operation", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("response", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

outbox = sa.Table(
    "sbt_tenant_outbox", metadata,
    sa.Column("event_id", _ID, primary_key=True),
    sa.Column("event", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True, index=True),
)

#: PostgreSQL advisory-lock key serialising ``create_all`` when several processes start at once.
_SCHEMA_LOCK = 0x5B7_7E4A


@attrs.frozen
class IdempotencyRecord:
    """The stored first answer of an idempotent request."""

    fingerprint: str
    status: int
    response: dict[str, Any]


def _registration(row: Any) -> TenantRegistration:
    return TenantRegistration(tenant_registration_id=row.registration_id, tenant_id=row.tenant_id,
                              active=bool(row.active), data=dict(row.data or {}))


def _tenant(row: Any) -> Tenant:
    return Tenant(tenant_id=row.tenant_id, tenant_registration_id=row.registration_id, active=bool(row.active),
                  data=dict(row.data or {}))


class TenantStore:
    """Rows of the registry in one SQL database (see the module docstring for the tables)."""

    def __init__(self, url: URL | str) -> None:
        self.url = sa.make_url(url) if isinstance(url, str) else url
        self.engine = create_engine(self.url)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.url.get_backend_name()

    def describe(self) -> str:
        """The URL with its password hidden (for logs and ``sbt tenants`` output)."""
        return self.url.render_as_string(hide_password=True)

    def create_schema(self) -> None:
        """Create the tables that do not exist yet (called on start; safe from several processes at once)."""
        with self.engine.begin() as conn:
            if self.backend == "postgresql":
                # Two processes starting together would both see no table and both CREATE it.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            metadata.create_all(conn, checkfirst=True)

    def dispose(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back when it raises.

        :raises BadRequestError: the database refused a value (e.g. PostgreSQL's ``json`` type refuses a
            lone UTF-16 surrogate escape): the client's data, not the server, is at fault.
        """
        try:
            with self.engine.begin() as conn:
                yield conn
        except DataError as exc:
            log.info("database refused a value: %s", exc.orig)
            raise BadRequestError("the data holds a value the registry cannot store "
                                  f"({type(exc.orig).__name__ if exc.orig else 'invalid value'})") from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (on SQLite a deferred one, which takes no write lock)."""
        with read_only(self.engine) as conn:
            yield conn

    # --- registrations -------------------------------------------------------------------------------

    def insert_registration(self, conn: Connection, reg: TenantRegistration) -> None:
        now = utcnow()
        conn.execute(sa.insert(registrations).values(
            registration_id=reg.tenant_registration_id, tenant_id=reg.tenant_id, active=reg.active,
            data=reg.data, created_at=now, updated_at=now))

    def get_registration(self, conn: Connection, registration_id: str, *,
                         for_update: bool = False) -> TenantRegistration | None:
        query = sa.select(registrations).where(registrations.c.registration_id == registration_id)
        if for_update:
            query = query.with_for_update()
        row = conn.execute(query).first()
        return _registration(row) if row is not None else None

    def save_registration(self, conn: Connection, reg: TenantRegistration) -> None:
        conn.execute(sa.update(registrations)
                     .where(registrations.c.registration_id == reg.tenant_registration_id)
                     .values(tenant_id=reg.tenant_id, active=reg.active, data=reg.data, updated_at=utcnow()))

    def list_registrations(self, conn: Connection, limit: int, after: str | None) -> list[TenantRegistration]:
        """Up to ``limit`` registrations with an id above ``after``, in id order."""
        query = sa.select(registrations).order_by(registrations.c.registration_id).limit(limit)
        if after:
            query = query.where(registrations.c.registration_id > after)
        return [_registration(r) for r in conn.execute(query)]

    # --- tenants -------------------------------------------------------------------------------------

    def insert_tenant(self, conn: Connection, tenant: Tenant) -> None:
        now = utcnow()
        conn.execute(sa.insert(tenants).values(
            tenant_id=tenant.tenant_id, registration_id=tenant.tenant_registration_id, active=tenant.active,
            data=tenant.data, created_at=now, updated_at=now))

    def get_tenant(self, conn: Connection, tenant_id: str, *, for_update: bool = False) -> Tenant | None:
        query = sa.select(tenants).where(tenants.c.tenant_id == tenant_id)
        if for_update:
            query = query.with_for_update()
        row = conn.execute(query).first()
        return _tenant(row) if row is not None else None

    def save_tenant(self, conn: Connection, tenant: Tenant) -> None:
        conn.execute(sa.update(tenants).where(tenants.c.tenant_id == tenant.tenant_id)
                     .values(registration_id=tenant.tenant_registration_id, active=tenant.active, data=tenant.data,
                             updated_at=utcnow()))

    def find_active_tenant(self, conn: Connection, key: str, value: str) -> Tenant | None:
        """The active tenant whose data has ``key`` equal to ``value`` (the oldest if several), or None."""
        query = (sa.select(tenants).where(tenants.c.active.is_(True), tenants.c.data[key].as_string() == value)
                 .order_by(tenants.c.created_at, tenants.c.tenant_id).limit(1))
        try:
            with conn.begin_nested():
                row = conn.execute(query).first()
        except sa.exc.DBAPIError:
            # A row an older version stored with a value the database's JSON functions refuse (NaN in
            # SQLite): find the tenant the slow way, as the listing reads such rows.
            found = (t for t in self._all_tenants(conn) if t.active and t.data.get(key) == value)
            return next(found, None)
        return _tenant(row) if row is not None else None

    def _all_tenants(self, conn: Connection) -> Iterator[Tenant]:
        after: str | None = None
        while page := self.list_tenants(conn, 500, after):
            yield from page
            after = page[-1].tenant_id

    def list_tenants(self, conn: Connection, limit: int, after: str | None) -> list[Tenant]:
        """Up to ``limit`` tenants with an id above ``after``, in id order."""
        query = sa.select(tenants).order_by(tenants.c.tenant_id).limit(limit)
        if after:
            query = query.where(tenants.c.tenant_id > after)
        return [_tenant(r) for r in conn.execute(query)]

    # --- idempotency ---------------------------------------------------------------------------------

    def insert_idempotency(self, conn: Connection, principal: str, operation: str, key: str,
                           record: IdempotencyRecord) -> None:
        """Claim ``key``; raises :class:`sqlalchemy.exc.IntegrityError` when it is taken (on PostgreSQL
        after the transaction holding it commits, so a concurrent retry waits for the first answer)."""
        conn.execute(sa.insert(idempotency).values(
            principal=principal, operation=operation, key=key, fingerprint=record.fingerprint,
            status=record.status, response=record.response, created_at=utcnow()))

    def get_idempotency(self, conn: Connection, principal: str, operation: str, key: str) -> IdempotencyRecord | None:
        row = conn.execute(sa.select(idempotency).where(
            idempotency.c.principal == principal, idempotency.c.operation == operation,
            idempotency.c.key == key)).first()
        if row is None:
            return None
        return IdempotencyRecord(fingerprint=row.fingerprint, status=row.status, response=dict(row.response))

    def prune_idempotency(self, conn: Connection, older_than: timedelta) -> int:
        """Forget answers older than ``older_than``; returns how many."""
        result = conn.execute(sa.delete(idempotency).where(idempotency.c.created_at < utcnow() - older_than))
        return result.rowcount or 0

    # --- outbox --------------------------------------------------------------------------------------

    def add_outbox(self, conn: Connection, events: Sequence[Event]) -> None:
        now = utcnow()
        for event in events:
            conn.execute(sa.insert(outbox).values(event_id=event.id, event=to_json(event), created_at=now))

    def claim_outbox(self, conn: Connection, event_id: str, lease: timedelta) -> Event | None:
        """Take the unpublished event ``event_id`` unless another process holds a live lease on it."""
        now = utcnow()
        result = conn.execute(
            sa.update(outbox)
            .where(outbox.c.event_id == event_id, outbox.c.published_at.is_(None),
                   sa.or_(outbox.c.claimed_at.is_(None), outbox.c.claimed_at < now - lease))
            .values(claimed_at=now))
        if result.rowcount != 1:
            return None
        row = conn.execute(sa.select(outbox.c.event).where(outbox.c.event_id == event_id)).one()
        return from_json(Event, row.event)

    def finish_outbox(self, conn: Connection, event_id: str, *, published: bool) -> None:
        """Mark a claimed event published, or release the claim so a later flush retries it."""
        values: dict[str, Any] = {"published_at": utcnow()} if published else {"claimed_at": None}
        conn.execute(sa.update(outbox).where(outbox.c.event_id == event_id).values(**values))

    def prune_outbox(self, conn: Connection, older_than: timedelta) -> int:
        """Forget published events older than ``older_than``; returns how many."""
        result = conn.execute(sa.delete(outbox).where(outbox.c.published_at < utcnow() - older_than))
        return result.rowcount or 0

    def pending_outbox(self, conn: Connection, limit: int = 100) -> list[str]:
        """Ids of events not yet published, oldest first."""
        query = (sa.select(outbox.c.event_id).where(outbox.c.published_at.is_(None))
                 .order_by(outbox.c.created_at).limit(limit))
        return [r.event_id for r in conn.execute(query)]

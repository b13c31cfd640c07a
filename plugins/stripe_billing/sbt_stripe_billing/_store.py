"""The provider's durable state, in SQL: SQLite under ``context.data_dir`` by default
(``.sbt/stripe/billing.sqlite3``, one process), or a PostgreSQL database that every process of a
deployment shares (``database_url``). SQLAlchemy Core over the core's engine recipe (``sbt_core._sql``).

Tables (prefixed ``sbt_stripe_`` so they can live beside the tenant registry and metering):

- ``customers``: tenant -> Stripe customer (so a redelivered ``onboardingRequest`` finds the customer
  without Stripe Search, which localstripe lacks and real Stripe serves eventually consistently).
- ``processed``: ids already handled, per kind (``ingest`` usage event ids, ``webhook`` Stripe event
  ids, ``emitted`` keys of events published, ``cancelled_subscription`` ids, ``offboarded`` tenants,
  ``overdue`` batches reported as ``billingFailure``), so every at-least-once input acts once, whichever
  process receives it (a primary key, never a check-then-insert).
- ``usage_open``: per tenant, metric and UTC-day bucket, the running sum not yet sealed (``value``) and
  the units sealed so far (``sealed``, a negative correction counted by its size, so it only grows), as
  sbt-aws's Firehose aggregator keeps sums per tenant and ``metric.name``; the day bucket keeps every
  meter event's timestamp inside the day its usage happened.
- ``usage_batches``: sums sealed by a push (``pending`` -> ``sent``, or ``expired`` beyond Stripe's 35-day
  horizon, or ``orphaned`` when the tenant was offboarded). A batch is the units ``[start, start + value)``
  of its (tenant, metric, day), and its ``identifier`` is derived from exactly that: the same usage
  always gets the same identifier and different usage never does, whichever process seals or sends it.
  A pending batch is re-sent with the *same* identifier until Stripe accepts it, so Stripe's identifier
  dedup makes a retried push bill once; ``claimed_until`` is the lease of the one process sending it.
- ``users``: the tenant's users (``billing_create_user``/``billing_delete_user``).

Schema versions (``sbt_stripe_schema``): 1 was the unprefixed SQLite tables with a per-file batch
counter (before several processes were supported); 2 is the above. A version-1 file is migrated on open:
its tables are renamed and its sums kept; its pending batches keep their identifiers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection

from sbt_core._sql import create_engine, read_only

__all__ = ["DAY", "SCHEMA_VERSION", "STORE_FILE", "Batch", "Store", "batch_identifier"]

DAY = 86_400
#: The SQLite file under the provider's folder of the state directory, without ``database_url``.
STORE_FILE = "billing.sqlite3"
SCHEMA_VERSION = 2
#: PostgreSQL advisory-lock key serialising schema creation when several processes start at once.
_SCHEMA_LOCK = 0x5B7_57B1

metadata = sa.MetaData()
_ID = sa.String(255)

schema_versions = sa.Table(
    "sbt_stripe_schema", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)
customers = sa.Table(
    "sbt_stripe_customers", metadata,
    sa.Column("tenant_id", _ID, primary_key=True),
    sa.Column("customer_id", _ID, nullable=False, index=True),
    sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.Float, nullable=False),
)
processed = sa.Table(
    "sbt_stripe_processed", metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("key", _ID, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
)
usage_open = sa.Table(
    "sbt_stripe_usage_open", metadata,
    sa.Column("tenant_id", _ID, primary_key=True),
    sa.Column("metric", _ID, primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),    # UTC day start, epoch seconds
    sa.Column("value", sa.BigInteger, nullable=False),       # not yet sealed
    # units sealed into batches, a correction counted by its size: only grows, so batches never overlap
    sa.Column("sealed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_ts", sa.BigInteger, nullable=False),     # latest usage time in the bucket, epoch seconds
)
usage_batches = sa.Table(
    "sbt_stripe_usage_batches", metadata,
    sa.Column("identifier", sa.String(64), primary_key=True),
    sa.Column("tenant_id", _ID, nullable=False),
    sa.Column("metric", _ID, nullable=False),
    sa.Column("bucket", sa.BigInteger, nullable=False),
    sa.Column("start", sa.BigInteger, nullable=False),       # the day's ``sealed`` before this batch
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),   # the meter event's timestamp, fixed when sealed
    sa.Column("status", sa.String(16), nullable=False, index=True),  # pending | sent | expired | orphaned
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("sealed_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float),
    sa.Column("claimed_until", sa.Float),                    # lease of the process sending it
    sa.UniqueConstraint("tenant_id", "metric", "bucket", "start"),
)
users = sa.Table(
    "sbt_stripe_users", metadata,
    sa.Column("tenant_id", _ID, primary_key=True),
    sa.Column("user_id", _ID, primary_key=True),
)

#: Version-1 table -> version-2 table (the SQLite file of a single process, before ``database_url``).
_LEGACY = {"customers": customers, "processed": processed, "usage_open": usage_open,
           "usage_batches": usage_batches, "users": users}


def batch_identifier(tenant_id: str, metric: str, bucket: int, start: int, value: int) -> str:
    """The meter-event identifier of the batch of ``value`` units of ``metric`` for ``tenant_id`` in the UTC
    day ``bucket`` sealed at position ``start`` of that day (its ``sealed`` count before it): ``sbt_`` + 40
    hex chars of SHA-256 of those five facts. It names the usage
    itself, never a process or a counter, so it is stable across retries, processes and restarts, and
    two different batches never share it (Stripe would drop the second as a duplicate)."""
    digest = hashlib.sha256(f"{tenant_id}\x1f{metric}\x1f{bucket}\x1f{start}\x1f{value}".encode()).hexdigest()
    return f"sbt_{digest[:40]}"


@attrs.frozen
class Batch:
    """One sealed aggregate: ``value`` (whole units, the day's units ``[start, start + value)``) of
    ``metric`` for ``tenant_id`` in the UTC day starting ``bucket`` (epoch s), sent as one meter event at
    ``timestamp`` (epoch s) under ``identifier``; ``sealed_at`` in epoch seconds."""

    identifier: str
    tenant_id: str
    metric: str
    bucket: int
    start: int
    value: int
    timestamp: int
    status: str
    attempts: int = 0
    last_error: str | None = None
    sealed_at: float = 0.0


_BATCH_COLUMNS = [usage_batches.c[n] for n in ("identifier", "tenant_id", "metric", "bucket", "start", "value",
                                                "timestamp", "status", "attempts", "last_error", "sealed_at")]


def _greater(a: Any, b: Any) -> Any:
    """max(a, b) in SQL that SQLite and PostgreSQL both run (SQLite has no GREATEST)."""
    return sa.case((b > a, b), else_=a)


class Store:
    """The provider's tables in one database (see the module docstring).

    :param url: a SQLAlchemy URL (``postgresql+psycopg://…`` or ``sqlite:///path``), or a :class:`Path` to
        a SQLite file.
    """

    def __init__(self, url: URL | str | Path) -> None:
        if isinstance(url, Path):
            url = sa.URL.create("sqlite", database=str(url))
        self.url = sa.make_url(url) if isinstance(url, str) else url
        # Written once per delivered usage event: an fsync per commit would cost ~10 ms an event. Commits
        # survive a killed process (WAL); only a power cut may lose the last ones, as before this store
        # moved to SQLAlchemy.
        self.engine = create_engine(self.url, sync_every_commit=False)
        self._insert = pg_insert if self.backend == "postgresql" else sqlite_insert
        self._create_schema()
        # Built once: building a statement costs more than running it (usage is added once per event).
        self._mark_stmt = (self._insert(processed)
                           .values(kind=sa.bindparam("kind"), key=sa.bindparam("key"), at=sa.bindparam("at"))
                           .on_conflict_do_nothing().returning(processed.c.key))
        add = self._insert(usage_open).values(
            tenant_id=sa.bindparam("tenant_id"), metric=sa.bindparam("metric"), bucket=sa.bindparam("bucket"),
            value=sa.bindparam("value"), sealed=0, last_ts=sa.bindparam("ts"))
        self._add_stmt = add.on_conflict_do_update(
            index_elements=[usage_open.c.tenant_id, usage_open.c.metric, usage_open.c.bucket],
            set_={"value": usage_open.c.value + add.excluded.value,
                  "last_ts": _greater(usage_open.c.last_ts, add.excluded.last_ts)})

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.url.get_backend_name()

    def describe(self) -> str:
        """The URL with its password hidden."""
        return self.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def _create_schema(self) -> None:
        with self.engine.begin() as conn:
            if self.backend == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            existing = set(sa.inspect(conn).get_table_names())
            metadata.create_all(conn, checkfirst=True)
            if self.backend == "sqlite" and "usage_batches" in existing:
                self._migrate_from_v1(conn)
            conn.execute(self._insert(schema_versions).values(version=SCHEMA_VERSION, applied_at=time.time())
                         .on_conflict_do_nothing())

    def _migrate_from_v1(self, conn: Connection) -> None:
        """Copy a version-1 file's rows into the version-2 tables, then drop the old ones. Its batches
        keep their identifiers (they may have reached Stripe); the units they cover become ``sealed``."""
        for name in ("customers", "processed", "users"):
            columns = ", ".join(c.name for c in _LEGACY[name].columns)
            conn.exec_driver_sql(f"INSERT OR IGNORE INTO {_LEGACY[name].name} ({columns}) SELECT {columns} FROM {name}")
        conn.exec_driver_sql(
            "INSERT OR IGNORE INTO sbt_stripe_usage_batches (identifier, tenant_id, metric, bucket, start, value, "
            "timestamp, status, attempts, last_error, sealed_at, sent_at) SELECT identifier, tenant_id, metric, "
            "bucket, (SELECT coalesce(sum(abs(o.value)), 0) FROM usage_batches o WHERE o.tenant_id = b.tenant_id AND "
            "o.metric = b.metric AND o.bucket = b.bucket AND o.seq < b.seq), value, timestamp, status, attempts, "
            "last_error, sealed_at, sent_at FROM usage_batches b")
        conn.exec_driver_sql(
            "INSERT OR IGNORE INTO sbt_stripe_usage_open (tenant_id, metric, bucket, value, sealed, last_ts) "
            "SELECT tenant_id, metric, bucket, value, (SELECT coalesce(sum(abs(b.value)), 0) FROM usage_batches b "
            "WHERE b.tenant_id = o.tenant_id AND b.metric = o.metric AND b.bucket = o.bucket), last_ts "
            "FROM usage_open o")
        # Days whose usage was all sealed still need their sealed count, or a new batch would restart at 0.
        conn.exec_driver_sql(
            "INSERT OR IGNORE INTO sbt_stripe_usage_open (tenant_id, metric, bucket, value, sealed, last_ts) "
            "SELECT tenant_id, metric, bucket, 0, sum(abs(value)), max(timestamp) FROM usage_batches "
            "GROUP BY tenant_id, metric, bucket")
        for name in _LEGACY:
            conn.exec_driver_sql(f"DROP TABLE {name}")

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # --- customers -----------------------------------------------------------------------------------

    def customer_of(self, tenant_id: str) -> str | None:
        """The live Stripe customer id recorded for ``tenant_id`` (None if unknown or deleted)."""
        with read_only(self.engine) as conn:
            return conn.execute(sa.select(customers.c.customer_id).where(
                customers.c.tenant_id == tenant_id, customers.c.deleted == 0)).scalar()

    def tenant_of(self, customer_id: str) -> str | None:
        """The tenant recorded for a Stripe customer id, deleted or not."""
        with read_only(self.engine) as conn:
            return conn.execute(sa.select(customers.c.tenant_id).where(
                customers.c.customer_id == customer_id).limit(1)).scalar()

    def set_offboarded(self, tenant_id: str, offboarded: bool) -> None:
        """Record that the tenant was offboarded (or onboarded again): its late usage is not billed."""
        if offboarded:
            self.mark("offboarded", tenant_id)
        else:
            with self._tx() as conn:
                conn.execute(sa.delete(processed).where(processed.c.kind == "offboarded",
                                                        processed.c.key == tenant_id))

    def is_offboarded(self, tenant_id: str) -> bool:
        """Whether the tenant was offboarded (and not onboarded again)."""
        return self.seen("offboarded", tenant_id)

    def set_customer(self, tenant_id: str, customer_id: str, *, deleted: bool = False) -> None:
        """Record (or replace) the tenant's customer."""
        stmt = self._insert(customers).values(tenant_id=tenant_id, customer_id=customer_id, deleted=int(deleted),
                                              updated_at=time.time())
        with self._tx() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=[customers.c.tenant_id], set_={
                "customer_id": stmt.excluded.customer_id, "deleted": stmt.excluded.deleted,
                "updated_at": stmt.excluded.updated_at}))

    # --- processed ids -----------------------------------------------------------------------------------

    def seen(self, kind: str, key: str) -> bool:
        """Whether ``key`` of ``kind`` was already handled."""
        with read_only(self.engine) as conn:
            return conn.execute(sa.select(sa.literal(1)).where(processed.c.kind == kind,
                                                               processed.c.key == key)).first() is not None

    def mark(self, kind: str, key: str) -> bool:
        """Record ``key`` as handled; False if it already was (by any process)."""
        with self._tx() as conn:
            return self._mark(conn, kind, key)

    def _mark(self, conn: Connection, kind: str, key: str) -> bool:
        # RETURNING, not rowcount: SQLAlchemy's psycopg 3 dialect reports -1 for an INSERT ... ON CONFLICT.
        return conn.execute(self._mark_stmt, {"kind": kind, "key": key, "at": time.time()}).first() is not None

    def forget_processed(self, kind: str, older_than: float) -> int:
        """Drop ``kind`` ids handled before ``older_than`` (epoch s); returns how many."""
        with self._tx() as conn:
            return conn.execute(sa.delete(processed).where(processed.c.kind == kind,
                                                           processed.c.at < older_than)).rowcount

    # --- usage ---------------------------------------------------------------------------------------------

    def add_usage(self, event_key: str, tenant_id: str, metric: str, value: int, ts: int) -> bool:
        """Add ``value`` to the tenant's ``metric`` in the UTC day of ``ts`` (epoch s), once per
        ``event_key``; False (nothing added) when the key was seen before. Atomic."""
        with self._tx() as conn:
            if not self._mark(conn, "ingest", event_key):
                return False
            conn.execute(self._add_stmt, {"tenant_id": tenant_id, "metric": metric, "bucket": ts - ts % DAY,
                                          "value": value, "ts": ts})
            return True

    def open_usage(self, tenant_id: str | None = None) -> list[tuple[str, str, int, int, int]]:
        """Unsealed sums as ``(tenant_id, metric, bucket, value, last_ts)``."""
        query = sa.select(usage_open.c.tenant_id, usage_open.c.metric, usage_open.c.bucket, usage_open.c.value,
                          usage_open.c.last_ts).where(usage_open.c.value != 0)
        if tenant_id is not None:
            query = query.where(usage_open.c.tenant_id == tenant_id)
        with read_only(self.engine) as conn:
            rows = conn.execute(query.order_by(usage_open.c.tenant_id, usage_open.c.metric, usage_open.c.bucket))
            return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def seal(self, now: int, tenant_id: str | None = None) -> int:
        """Move every open sum (of one tenant, or all) into a new pending batch covering the next units of
        its (tenant, metric, day); the batch's timestamp is its latest usage time, capped at ``now``
        (Stripe refuses timestamps more than 5 minutes ahead). Returns how many were sealed.

        Safe from several processes at once: the open sums are read ``FOR UPDATE``, so PostgreSQL gives each
        row to one transaction (a second sealer waits, then sees it empty); SQLite's write lock does the same."""
        o = usage_open.c
        query = sa.select(o.tenant_id, o.metric, o.bucket, o.value, o.sealed, o.last_ts).where(o.value != 0)
        if tenant_id is not None:
            query = query.where(o.tenant_id == tenant_id)
        sealed = 0
        with self._tx() as conn:
            for tid, metric, bucket, value, start, last_ts in conn.execute(query.with_for_update()).all():
                conn.execute(sa.update(usage_open).where(o.tenant_id == tid, o.metric == metric, o.bucket == bucket)
                             .values(value=0, sealed=start + abs(value)))
                conn.execute(usage_batches.insert().values(
                    identifier=batch_identifier(tid, metric, bucket, start, value), tenant_id=tid, metric=metric,
                    bucket=bucket, start=start, value=value, timestamp=min(last_ts, now), status="pending",
                    sealed_at=time.time()))
                sealed += 1
        return sealed

    def batches(self, status: str, tenant_id: str | None = None) -> list[Batch]:
        """Batches in ``status`` (of one tenant, or all), oldest first."""
        query = sa.select(*_BATCH_COLUMNS).where(usage_batches.c.status == status)
        if tenant_id is not None:
            query = query.where(usage_batches.c.tenant_id == tenant_id)
        order = (usage_batches.c.bucket, usage_batches.c.tenant_id, usage_batches.c.metric, usage_batches.c.start)
        with read_only(self.engine) as conn:
            return [Batch(*row) for row in conn.execute(query.order_by(*order))]

    def claim(self, identifier: str, lease_seconds: float) -> bool:
        """Take the lease of sending pending batch ``identifier`` for ``lease_seconds``; False when it is no
        longer pending or another process holds an unexpired lease. A process that dies while sending
        leaves the lease to expire; the next sender re-sends under the same identifier."""
        now = time.time()
        with self._tx() as conn:
            return conn.execute(sa.update(usage_batches).where(
                usage_batches.c.identifier == identifier, usage_batches.c.status == "pending",
                sa.or_(usage_batches.c.claimed_until.is_(None), usage_batches.c.claimed_until < now))
                .values(claimed_until=now + lease_seconds)).rowcount == 1

    def set_batch_status(self, identifier: str, status: str, error: str | None = None) -> None:
        """Record the outcome of a send (``sent``, or ``pending`` with ``error``), or a terminal status;
        releases the lease."""
        now = time.time()
        with self._tx() as conn:
            conn.execute(sa.update(usage_batches).where(usage_batches.c.identifier == identifier).values(
                status=status, attempts=usage_batches.c.attempts + 1, last_error=error, claimed_until=None,
                sent_at=sa.case((sa.literal(status) == "sent", now), else_=usage_batches.c.sent_at)))

    def prune_batches(self, before_bucket: int, reported_before: float) -> int:
        """Drop sent batches of days before ``before_bucket`` (no event for those days can be sent any
        more) with their days' sums, and expired/orphaned batches sealed before ``reported_before`` (epoch s;
        kept until then for ``sbt stripe usage``). Returns how many batches."""
        b = usage_batches.c
        with self._tx() as conn:
            dropped = conn.execute(sa.delete(usage_batches).where(sa.or_(
                sa.and_(b.status == "sent", b.bucket < before_bucket),
                sa.and_(b.status.in_(("expired", "orphaned")), b.sealed_at < reported_before)))).rowcount
            conn.execute(sa.delete(usage_open).where(usage_open.c.bucket < before_bucket, usage_open.c.value == 0))
            return dropped

    # --- users ----------------------------------------------------------------------------------------------

    def add_user(self, tenant_id: str, user_id: str) -> None:
        with self._tx() as conn:
            conn.execute(self._insert(users).values(tenant_id=tenant_id, user_id=user_id).on_conflict_do_nothing())

    def remove_user(self, tenant_id: str, user_id: str) -> None:
        with self._tx() as conn:
            conn.execute(sa.delete(users).where(users.c.tenant_id == tenant_id, users.c.user_id == user_id))

    def user_count(self, tenant_id: str) -> int:
        with read_only(self.engine) as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(users.c.tenant_id == tenant_id)).scalar_one())

"""The provider's durable state: one SQLite file under ``context.data_dir`` (``.sbt/stripe/billing.sqlite3``).

Tables:

- ``customers``: tenant -> Stripe customer (so a redelivered ``onboardingRequest`` finds the customer
  without Stripe Search, which localstripe lacks and real Stripe serves eventually consistently).
- ``processed``: ids already handled, per kind (``ingest`` usage event ids, ``webhook`` Stripe event
  ids, ``emitted`` keys of events published, ``cancelled_subscription`` ids, ``offboarded`` tenants), so
  every at-least-once input acts once.
- ``usage_open``: running sums per tenant, metric and UTC-day bucket, as sbt-aws's Firehose aggregator
  keeps them per tenant and ``metric.name``; the day bucket keeps every meter event's timestamp inside
  the day its usage happened.
- ``usage_batches``: sums sealed by a push, each with a deterministic ``identifier``
  (``pending`` -> ``sent``, or ``expired`` beyond Stripe's 35-day horizon, or ``orphaned`` when the
  tenant was offboarded). A pending batch is re-sent with the *same* identifier until Stripe
  accepts it, so Stripe's identifier dedup makes a retried push bill once.
- ``users``: the tenant's users (``billing_create_user``/``billing_delete_user``).

One connection guarded by a lock: hooks run on several threads (bus workers, HTTP, scheduler).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

__all__ = ["Batch", "Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    tenant_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS customers_by_id ON customers (customer_id);
CREATE TABLE IF NOT EXISTS processed (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS usage_open (
    tenant_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    bucket INTEGER NOT NULL,          -- UTC day start, epoch seconds
    value INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,         -- latest usage time in the bucket, epoch seconds
    PRIMARY KEY (tenant_id, metric, bucket)
);
CREATE TABLE IF NOT EXISTS usage_batches (
    identifier TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    value INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,       -- the meter event's timestamp, fixed when sealed
    status TEXT NOT NULL,             -- pending | sent | expired | orphaned
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sealed_at REAL NOT NULL,
    sent_at REAL,
    UNIQUE (tenant_id, metric, bucket, seq)
);
CREATE TABLE IF NOT EXISTS users (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
"""

DAY = 86_400


def batch_identifier(tenant_id: str, metric: str, bucket: int, seq: int) -> str:
    """Deterministic meter-event identifier of one sealed batch: ``sbt_`` + 40 hex chars of
    SHA-256(tenant, metric, day bucket, batch number). Stable across retries; unique per batch."""
    digest = hashlib.sha256(f"{tenant_id}\x1f{metric}\x1f{bucket}\x1f{seq}".encode()).hexdigest()
    return f"sbt_{digest[:40]}"


@attrs.frozen
class Batch:
    """One sealed aggregate: ``value`` (whole units) of ``metric`` for ``tenant_id`` in the UTC day
    starting ``bucket`` (epoch s), sent as one meter event at ``timestamp`` (epoch s) under ``identifier``."""

    identifier: str
    tenant_id: str
    metric: str
    bucket: int
    seq: int
    value: int
    timestamp: int
    status: str
    attempts: int = 0
    last_error: str | None = None


def _open_usage_query(tenant_id: str | None) -> tuple[str, tuple[str, ...]]:
    """The query (and its arguments) of the open sums, of one tenant or of all."""
    sql = "SELECT tenant_id, metric, bucket, value, last_ts FROM usage_open"
    return (sql + " WHERE tenant_id = ?", (tenant_id,)) if tenant_id is not None else (sql, ())


class Store:
    """SQLite state of the provider (see the module docstring for the tables)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- customers -----------------------------------------------------------------------------------

    def customer_of(self, tenant_id: str) -> str | None:
        """The live Stripe customer id recorded for ``tenant_id`` (None if unknown or deleted)."""
        with self._lock:
            row = self._db.execute("SELECT customer_id FROM customers WHERE tenant_id = ? AND deleted = 0",
                                   (tenant_id,)).fetchone()
        return row[0] if row else None

    def tenant_of(self, customer_id: str) -> str | None:
        """The tenant recorded for a Stripe customer id, deleted or not."""
        with self._lock:
            row = self._db.execute("SELECT tenant_id FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
        return row[0] if row else None

    def set_offboarded(self, tenant_id: str, offboarded: bool) -> None:
        """Record that the tenant was offboarded (or onboarded again): its late usage is not billed."""
        if offboarded:
            self.mark("offboarded", tenant_id)
        else:
            with self._tx() as db:
                db.execute("DELETE FROM processed WHERE kind = 'offboarded' AND key = ?", (tenant_id,))

    def is_offboarded(self, tenant_id: str) -> bool:
        """Whether the tenant was offboarded (and not onboarded again)."""
        return self.seen("offboarded", tenant_id)

    def set_customer(self, tenant_id: str, customer_id: str, *, deleted: bool = False) -> None:
        """Record (or replace) the tenant's customer."""
        with self._tx() as db:
            db.execute("INSERT INTO customers (tenant_id, customer_id, deleted, updated_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (tenant_id) DO UPDATE SET customer_id = excluded.customer_id, "
                       "deleted = excluded.deleted, updated_at = excluded.updated_at",
                       (tenant_id, customer_id, int(deleted), time.time()))

    # --- processed ids -----------------------------------------------------------------------------------

    def seen(self, kind: str, key: str) -> bool:
        """Whether ``key`` of ``kind`` was already handled."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM processed WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            return row is not None

    def mark(self, kind: str, key: str) -> bool:
        """Record ``key`` as handled; False if it already was."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO processed (kind, key, at) VALUES (?, ?, ?)",
                             (kind, key, time.time()))
            return cur.rowcount == 1

    def forget_processed(self, kind: str, older_than: float) -> int:
        """Drop ``kind`` ids handled before ``older_than`` (epoch s); returns how many."""
        with self._tx() as db:
            return db.execute("DELETE FROM processed WHERE kind = ? AND at < ?", (kind, older_than)).rowcount

    # --- usage ---------------------------------------------------------------------------------------------

    def add_usage(self, event_key: str, tenant_id: str, metric: str, value: int, ts: int) -> bool:
        """Add ``value`` to the tenant's ``metric`` in the UTC day of ``ts`` (epoch s), once per
        ``event_key``; False (nothing added) when the key was seen before. Atomic."""
        bucket = ts - ts % DAY
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO processed (kind, key, at) VALUES ('ingest', ?, ?)",
                             (event_key, time.time()))
            if cur.rowcount == 0:
                return False
            db.execute("INSERT INTO usage_open (tenant_id, metric, bucket, value, last_ts) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (tenant_id, metric, bucket) DO UPDATE SET value = value + excluded.value, "
                       "last_ts = max(last_ts, excluded.last_ts)",
                       (tenant_id, metric, bucket, value, ts))
            return True

    def open_usage(self, tenant_id: str | None = None) -> list[tuple[str, str, int, int, int]]:
        """Unsealed sums as ``(tenant_id, metric, bucket, value, last_ts)``."""
        sql, args = _open_usage_query(tenant_id)
        with self._lock:
            return list(self._db.execute(sql + " ORDER BY tenant_id, metric, bucket", args))

    def seal(self, now: int, tenant_id: str | None = None) -> int:
        """Move every open sum (of one tenant, or all) into a new pending batch with the next sequence
        number of its (tenant, metric, bucket); the batch's timestamp is its latest usage time, capped at
        ``now`` (Stripe refuses timestamps more than 5 minutes ahead). Returns how many were sealed."""
        sealed = 0
        with self._tx() as db:
            sql, args = _open_usage_query(tenant_id)
            for tid, metric, bucket, value, last_ts in list(db.execute(sql, args)):
                db.execute("DELETE FROM usage_open WHERE tenant_id = ? AND metric = ? AND bucket = ?",
                           (tid, metric, bucket))
                if value == 0:  # nothing to bill; Stripe would accept a 0 but it is noise
                    continue
                (seq,) = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM usage_batches "
                                    "WHERE tenant_id = ? AND metric = ? AND bucket = ?",
                                    (tid, metric, bucket)).fetchone()
                db.execute("INSERT INTO usage_batches (identifier, tenant_id, metric, bucket, seq, value, timestamp, "
                           "status, sealed_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                           (batch_identifier(tid, metric, bucket, seq), tid, metric, bucket, seq, value,
                            min(last_ts, now), time.time()))
                sealed += 1
        return sealed

    def batches(self, status: str, tenant_id: str | None = None) -> list[Batch]:
        """Batches in ``status`` (of one tenant, or all), oldest first."""
        sql = ("SELECT identifier, tenant_id, metric, bucket, seq, value, timestamp, status, attempts, last_error "
               "FROM usage_batches WHERE status = ?")
        args: tuple[str, ...] = (status,)
        if tenant_id is not None:
            sql, args = sql + " AND tenant_id = ?", (status, tenant_id)
        with self._lock:
            rows = list(self._db.execute(sql + " ORDER BY bucket, tenant_id, metric, seq", args))
        return [Batch(*row) for row in rows]

    def set_batch_status(self, identifier: str, status: str, error: str | None = None) -> None:
        """Record the outcome of a send (``sent``, or ``pending`` with ``error``), or a terminal status."""
        with self._tx() as db:
            db.execute("UPDATE usage_batches SET status = ?, attempts = attempts + 1, last_error = ?, "
                       "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE identifier = ?",
                       (status, error, status, time.time(), identifier))

    def prune_batches(self, before_bucket: int, reported_before: float) -> int:
        """Drop sent batches of days before ``before_bucket`` (no event for those days can be sent any
        more, so their sequence numbers are no longer needed), and expired/orphaned batches sealed before
        ``reported_before`` (epoch s; kept until then for ``sbt stripe usage``). Returns how many."""
        with self._tx() as db:
            return db.execute("DELETE FROM usage_batches WHERE (status = 'sent' AND bucket < ?) "
                              "OR (status IN ('expired', 'orphaned') AND sealed_at < ?)",
                              (before_bucket, reported_before)).rowcount

    # --- users ----------------------------------------------------------------------------------------------

    def add_user(self, tenant_id: str, user_id: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO users (tenant_id, user_id) VALUES (?, ?)", (tenant_id, user_id))

    def remove_user(self, tenant_id: str, user_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM users WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id))

    def user_count(self, tenant_id: str) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM users WHERE tenant_id = ?", (tenant_id,)).fetchone()
        return int(count)
